import Foundation

/// A small deterministic generator for the fuzz tests, so a failure can be replayed from its seed
/// (`WARDEN_FUZZ_SEED`).
public struct SplitMix: RandomNumberGenerator {
    public var state: UInt64

    public init(state: UInt64) { self.state = state }

    /// Seeded from `WARDEN_FUZZ_SEED` when set, else from `fallback`.
    public init(seedOr fallback: UInt64) {
        self.init(state: UInt64(ProcessInfo.processInfo.environment["WARDEN_FUZZ_SEED"] ?? "") ?? fallback)
    }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
