import Foundation
import WardenCore

/// A snapshot of a service (by default "app") as the JSON status has it (its memberwise initializer is internal to WardenCore).
func snapshot(
    name: String = "app", instanceOf group: String? = nil, monitor: String = "monitored", failures: [String] = [], busy: Bool = false, backingOff: Bool = false, lastCheck: Double? = 100,
    checkSeconds: Double? = 0.004, startSeconds: Double? = nil, cpuPercent: Double? = nil, memoryBytes: UInt64? = nil, exitStatus: Int? = nil,
    programStatus: Int? = nil, status: String = "OK", pid: Int32? = nil, uptime: Double? = nil, events: [Event] = []
) throws -> ServiceSnapshot {
    var metrics: [String: Any] = [:]
    if let exitStatus { metrics["exitStatus"] = exitStatus }
    if let programStatus { metrics["programStatus"] = programStatus }
    if let checkSeconds { metrics["checkSeconds"] = checkSeconds }
    if let startSeconds { metrics["startSeconds"] = startSeconds }
    if let cpuPercent { metrics["cpuPercent"] = cpuPercent }
    if let memoryBytes { metrics["memoryBytes"] = memoryBytes }
    var object: [String: Any] = [
        "name": name, "type": "Process", "monitType": 3, "status": status, "monitor": monitor, "mode": "active", "restarts": 2,
        "failures": failures, "groups": [], "dependencies": [], "metrics": metrics, "events": [], "busy": busy,
        "acceptsTraffic": failures.isEmpty, "backingOff": backingOff,
    ]
    if let lastCheck { object["lastCheck"] = lastCheck }
    if let pid { object["pid"] = pid }
    if let uptime { object["uptimeSeconds"] = uptime }
    if let group { object["instance"] = ["group": group, "index": 1, "port": 8101, "ready": true] }
    var decoded = try JSONDecoder().decode(ServiceSnapshot.self, from: JSONSerialization.data(withJSONObject: object))
    decoded.events = events
    return decoded
}
