import Synchronization
import WardenPlatform

#if canImport(Glibc)
import Glibc
#endif

/// The machine's CPU time by kind (user, system, nice, iowait, hardirq, softirq, steal, guest,
/// guestnice) in percent since the previous status request, or since boot for the first one.
enum CPUShares {
    private static let previous = Mutex<[UInt64]?>(nil)

    static func sample() -> [Double] {
        guard let cpu = ProcessResources.cpuTicks() else { return Array(repeating: 0, count: 9) }
        // /proc/stat's order: user nice system idle iowait irq softirq steal guest guest_nice.
        let ticks = [cpu.user, cpu.nice, cpu.system, cpu.idle, cpu.iowait, cpu.irq, cpu.softirq, cpu.steal, cpu.guest, cpu.guestNice]
        let last = previous.withLock { stored -> [UInt64]? in
            defer { stored = ticks }
            return stored
        }
        var delta = ticks
        if let last, last.count == ticks.count, zip(ticks, last).allSatisfy({ $0 >= $1 }), ticks != last {
            delta = zip(ticks, last).map { $0 - $1 }
        }
        // guest time is counted in user time too (and guest_nice in nice), so it is not added again.
        let total = Double(delta[0...7].reduce(0, +))
        guard total > 0 else { return Array(repeating: 0, count: 9) }
        let order = [0, 2, 1, 4, 5, 6, 7, 8, 9]
        return order.map { Double(delta[$0]) / total * 100 }
    }
}
