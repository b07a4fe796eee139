import Synchronization
import WardenCore

/// A fixed-size ring: once full, each append replaces the oldest element. Its storage is reserved at
/// once, so its memory is known in advance and never grows.
struct Ring<Element> {
    let capacity: Int
    private var storage: [Element] = []
    /// Where the next append goes once the ring is full: the oldest element.
    private var oldest = 0

    init(capacity: Int) {
        self.capacity = max(1, capacity)
        storage.reserveCapacity(self.capacity)
    }

    mutating func append(_ element: Element) {
        if storage.count < capacity {
            storage.append(element)
        } else {
            storage[oldest] = element
            oldest = (oldest + 1) % capacity
        }
    }

    mutating func removeAll() {
        storage.removeAll(keepingCapacity: true)
        oldest = 0
    }

    /// Oldest first.
    var elements: [Element] { Array(storage[oldest...] + storage[..<oldest]) }
    var last: Element? { storage.isEmpty ? nil : storage[(oldest + storage.count - 1) % storage.count] }
}

extension Ring: Sendable where Element: Sendable {}

/// What the charts plot, in the order they are drawn.
public enum HistorySeries: String, CaseIterable, Sendable {
    /// CPU of the process, percent of one core.
    case cpu
    /// Resident memory of the process, bytes.
    case memory
    /// How long the service's check took, seconds.
    case check
}

/// One point of a chart: a check's figures, or the mean and maximum of a minute's checks.
public struct HistoryPoint: Sendable, Hashable, Codable {
    public var time: Double
    public var cpu: Double?
    public var memory: Double?
    public var check: Double?
    /// The maxima of a minute (the day's points only).
    public var cpuMax: Double?
    public var memoryMax: Double?
    public var checkMax: Double?

    public func value(_ series: HistorySeries) -> Double? {
        switch series {
        case .cpu: cpu
        case .memory: memory
        case .check: check
        }
    }

    public func maximum(_ series: HistorySeries) -> Double? {
        switch series {
        case .cpu: cpuMax
        case .memory: memoryMax
        case .check: checkMax
        }
    }
}

/// A vertical mark on the charts: a restart (and why) or another event of the service; on a site's
/// charts, its maintenance switched on or off.
public struct HistoryMark: Sendable, Hashable, Codable {
    /// Stored in one byte: raw values take no room in the value.
    public enum Kind: String, Sendable, Codable, CaseIterable {
        case crash
        case checkFailed = "check"
        case user, deploy
        /// A check failed without a restart.
        case failure
        /// A failed check passes again, or an action was done.
        case change
        /// A site's planned maintenance began or ended (its charts).
        case maintenanceOn = "maintenance-on"
        case maintenanceOff = "maintenance-off"

        var isRestart: Bool { [.crash, .checkFailed, .user, .deploy].contains(self) }
        var label: String {
            switch self {
            case .crash: "restart (crash)"
            case .checkFailed: "restart (failed check)"
            case .user: "restart (user)"
            case .deploy: "deploy"
            case .failure: "check failed"
            case .change: "event"
            case .maintenanceOn: "maintenance on"
            case .maintenanceOff: "maintenance off"
            }
        }
    }

    public var time: Double
    public var kind: Kind

    init(time: Double, kind: Kind) {
        self.time = time
        self.kind = kind
    }

    /// The mark an event leaves; warden's own events (another service name) leave none here.
    init(_ event: Event) {
        time = event.date
        switch RestartCause(event) {
        case .crash: kind = .crash
        case .check: kind = .checkFailed
        case .user: kind = .user
        case .deploy: kind = .deploy
        case nil where event.action == "maintenance": kind = event.message.hasSuffix(" on") ? .maintenanceOn : .maintenanceOff
        case nil: kind = event.state == .failed ? .failure : .change
        }
    }
}

/// Which span a chart shows: each check of the last hour, or each minute of the last day.
public enum HistoryRange: String, Sendable, CaseIterable {
    case hour, day

    public var seconds: Double { self == .hour ? 3600 : 86400 }
}

/// One service's recent figures, in memory: a point per check for the last hour, a point per minute
/// (mean and maximum) for the last day, and the marks of its restarts and events. Pure: the caller
/// gives every time (wall-clock seconds), so tests drive it with a manual clock.
///
/// Memory is fixed when it is made (see `bytes(cycleSeconds:)`): 32 bytes per check point,
/// 56 per minute point, 16 per mark.
public struct ServiceHistory: Sendable {
    struct CheckPoint {
        var time: Double
        /// NaN when unknown: an optional would take 16 bytes instead of 8.
        var cpu, memory, check: Double
    }

    struct MinutePoint {
        var time: Double
        var cpu, memory, check: Double
        var cpuMax, memoryMax, checkMax: Double
    }

    /// The running totals of the minute being filled (CPU, memory, check), inline: no allocation.
    struct Accumulator {
        var minute: Double
        var sums = SIMD3<Double>(repeating: 0)
        var counts = SIMD3<Double>(repeating: 0)
        var maxima = SIMD3<Double>(repeating: -.infinity)

        mutating func add(_ values: SIMD3<Double>) {
            for index in 0..<3 where !values[index].isNaN {
                sums[index] += values[index]
                counts[index] += 1
                maxima[index] = max(maxima[index], values[index])
            }
        }

        var point: MinutePoint {
            var means = SIMD3<Double>(repeating: .nan)
            var highs = SIMD3<Double>(repeating: .nan)
            for index in 0..<3 where counts[index] > 0 {
                means[index] = sums[index] / counts[index]
                highs[index] = maxima[index]
            }
            return MinutePoint(
                time: minute, cpu: means[0], memory: means[1], check: means[2], cpuMax: highs[0], memoryMax: highs[1], checkMax: highs[2])
        }
    }

    static let minutesKept = 1440
    static let marksKept = 256
    /// A check point per cycle for an hour, at most one a second.
    static func checkPointsKept(cycleSeconds: Int) -> Int { 3600 / max(1, cycleSeconds) }

    /// The bytes a service's history takes at most, whatever happens: its rings are reserved at once.
    public static func bytes(cycleSeconds: Int) -> Int {
        checkPointsKept(cycleSeconds: cycleSeconds) * MemoryLayout<CheckPoint>.stride + minutesKept * MemoryLayout<MinutePoint>.stride
            + marksKept * MemoryLayout<HistoryMark>.stride
    }

    /// The daemon's cycle, seconds: the expected spacing of check points.
    public let cycleSeconds: Int
    private var checks: Ring<CheckPoint>
    private var minutes = Ring<MinutePoint>(capacity: minutesKept)
    private var current: Accumulator?
    private var marks = Ring<HistoryMark>(capacity: marksKept)
    /// The `lastCheck` of the last snapshot taken in: a check is recorded once, however often it is read.
    private var lastCheck: Double?

    public init(cycleSeconds: Int) {
        self.cycleSeconds = max(1, cycleSeconds)
        checks = Ring(capacity: Self.checkPointsKept(cycleSeconds: cycleSeconds))
    }

    /// Takes in a snapshot: a point when it shows a check not seen before, once that check is over
    /// (while it runs, the figures are the previous check's).
    public mutating func observe(_ snapshot: ServiceSnapshot) {
        guard let checked = snapshot.lastCheck, checked != lastCheck, !snapshot.busy else { return }
        lastCheck = checked
        record(
            time: checked, cpu: snapshot.metrics.cpuPercent, memory: snapshot.metrics.memoryBytes.map { Double($0) },
            check: snapshot.metrics.checkSeconds)
    }

    public mutating func record(time: Double, cpu: Double?, memory: Double?, check: Double?) {
        if let last = checks.last, time < last.time {
            // The wall clock went back: older points would be drawn after newer ones.
            checks.removeAll()
            minutes.removeAll()
            marks.removeAll()
            current = nil
        }
        let values = SIMD3(cpu ?? .nan, memory ?? .nan, check ?? .nan)
        checks.append(CheckPoint(time: time, cpu: values[0], memory: values[1], check: values[2]))
        let minute = (time / 60).rounded(.down) * 60
        if let current, current.minute != minute { minutes.append(current.point) }
        if current?.minute != minute { current = Accumulator(minute: minute) }
        current?.add(values)
    }

    public mutating func mark(_ mark: HistoryMark) { marks.append(mark) }

    /// The points of `range` up to `now`, oldest first; the day's last point is the minute being filled.
    public func points(_ range: HistoryRange, now: Double) -> [HistoryPoint] {
        let start = now - range.seconds
        func known(_ value: Double) -> Double? { value.isNaN ? nil : value }
        switch range {
        case .hour:
            return checks.elements.filter { $0.time >= start && $0.time <= now }.map {
                HistoryPoint(time: $0.time, cpu: known($0.cpu), memory: known($0.memory), check: known($0.check))
            }
        case .day:
            return (minutes.elements + (current.map { [$0.point] } ?? [])).filter { $0.time >= start && $0.time <= now }.map {
                HistoryPoint(
                    time: $0.time, cpu: known($0.cpu), memory: known($0.memory), check: known($0.check), cpuMax: known($0.cpuMax),
                    memoryMax: known($0.memoryMax), checkMax: known($0.checkMax))
            }
        }
    }

    /// The times a chart of `range` spans: the whole range, or since the history began when that is
    /// more recent (at least a minute), so a young history is not squeezed against the right edge.
    public func window(_ range: HistoryRange, now: Double) -> (start: Double, end: Double) {
        let earliest = [checks.elements.first?.time, marks.elements.first?.time].compactMap { $0 }.min() ?? now
        return (max(now - range.seconds, min(earliest, now - 60)), now)
    }

    public func marks(_ range: HistoryRange, now: Double) -> [HistoryMark] {
        marks.elements.filter { $0.time >= now - range.seconds && $0.time <= now }
    }
}

/// The histories of every service, fed by the control server from the supervisor's snapshots (read
/// more often than the cycle, so each check is taken) and its events.
public final class HistoryStore: Sendable {
    struct State {
        var histories: [String: ServiceHistory] = [:]
        /// The service an instance belongs to (`myapp@8101` → `myapp`): a deploy is an event of the service.
        var groups: [String: String] = [:]
    }

    let cycleSeconds: Int
    private let state = Mutex(State())

    public init(cycleSeconds: Int) { self.cycleSeconds = cycleSeconds }

    /// Services no longer configured (a reload, an old deploy generation) are forgotten.
    func observe(_ snapshots: [ServiceSnapshot]) {
        state.withLock { state in
            var kept = State()
            for snapshot in snapshots {
                // Taken out, not copied: its rings are then changed in place, not copied on every read.
                var history = state.histories.removeValue(forKey: snapshot.name) ?? ServiceHistory(cycleSeconds: cycleSeconds)
                history.observe(snapshot)
                kept.histories[snapshot.name] = history
                kept.groups[snapshot.name] = snapshot.instance?.group
            }
            state = kept
        }
    }

    /// Marks the service's chart, or each of its instances' when it has instances.
    func record(_ event: Event) {
        state.withLock { state in
            for name in state.histories.keys where name == event.service || state.groups[name] == event.service {
                state.histories[name]?.mark(HistoryMark(event))
            }
        }
    }

    func history(of name: String) -> ServiceHistory? { state.withLock { $0.histories[name] } }
}

/// `GET /_history?service=NAME&range=hour|day`: what a service's charts draw.
public struct HistoryDocument: Sendable, Codable {
    public var service: String
    public var range: String
    public var start: Double
    public var end: Double
    public var points: [HistoryPoint]
    public var marks: [HistoryMark]
}
