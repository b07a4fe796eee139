import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// What monit's XML status says of a process beyond warden's own measurements, read from /proc when
/// the status is asked for: parent, owner, descriptors and I/O totals.
struct ProcFiles {
    let pid: Int32

    /// A small /proc file (their size reads as 0, so read until the end).
    static func read(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        // /proc files are small; the bound keeps a surprise from growing without end.
        while bytes.count < 1 << 20 {
            let count = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if count < 0, errno == EINTR { continue }
            guard count > 0 else { break }
            bytes += buffer[0..<count]
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The numbers of a `Name:` line of /proc/PID/status (Uid: real effective saved fs).
    func status(_ name: String) -> [Int] {
        guard let text = Self.read("/proc/\(pid)/status") else { return [] }
        for line in text.split(separator: "\n") where line.hasPrefix(name + ":") {
            return line.dropFirst(name.count + 1).split(whereSeparator: { $0 == " " || $0 == "\t" }).compactMap { Int($0) }
        }
        return []
    }

    var openFiles: Int {
        guard let directory = opendir("/proc/\(pid)/fd") else { return 0 }
        defer { closedir(directory) }
        var count = 0
        while let entry = readdir(directory) {
            if entry.pointee.d_name.0 != UInt8(ascii: ".") { count += 1 }
        }
        return count
    }

    /// `Max open files` of /proc/PID/limits; "unlimited" reads as -1.
    var openFilesLimit: (soft: Int, hard: Int) {
        guard let text = Self.read("/proc/\(pid)/limits") else { return (0, 0) }
        for line in text.split(separator: "\n") where line.hasPrefix("Max open files") {
            let words = line.dropFirst("Max open files".count).split(separator: " ")
            guard words.count >= 2 else { break }
            return (Int(words[0]) ?? -1, Int(words[1]) ?? -1)
        }
        return (0, 0)
    }

    /// /proc/PID/io as a dictionary (rchar, wchar, syscr, syscw, read_bytes, write_bytes).
    var io: [String: UInt64] {
        var values: [String: UInt64] = [:]
        for line in (Self.read("/proc/\(pid)/io") ?? "").split(separator: "\n") {
            let parts = line.split(separator: ":")
            if parts.count == 2, let value = UInt64(parts[1].trimmingLeadingSpaces) { values[String(parts[0])] = value }
        }
        return values
    }
}

extension Substring {
    fileprivate var trimmingLeadingSpaces: Substring { drop { $0 == " " || $0 == "\t" } }
}

/// The machine's CPU time by kind (user, system, nice, iowait, hardirq, softirq, steal, guest,
/// guestnice) in percent since the previous status request, or since boot for the first one.
enum CPUShares {
    private static let previous = Mutex<[UInt64]?>(nil)

    static func sample() -> [Double] {
        let line = (ProcFiles.read("/proc/stat") ?? "").split(separator: "\n").first { $0.hasPrefix("cpu ") } ?? ""
        // /proc/stat: user nice system idle iowait irq softirq steal guest guest_nice.
        let ticks = line.split(separator: " ").dropFirst().compactMap { UInt64($0) }
        guard ticks.count >= 10 else { return Array(repeating: 0, count: 9) }
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

/// `value` with exactly `digits` decimals (monit's "%.2f", "%.6f"), without Foundation.
func fixed(_ value: Double, _ digits: Int) -> String {
    guard value.isFinite else { return "0" }
    var scale = 1.0
    for _ in 0..<digits { scale *= 10 }
    let scaled = (abs(value) * scale).rounded()
    guard scaled < 9e15 else { return String(describing: value) }
    let whole = Int(scaled) / Int(scale)
    let fraction = String(Int(scaled) % Int(scale))
    let sign = value < 0 && scaled > 0 ? "-" : ""
    return digits == 0 ? "\(sign)\(whole)" : "\(sign)\(whole)." + String(repeating: "0", count: digits - fraction.count) + fraction
}
