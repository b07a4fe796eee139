import Foundation
import WardenCore

/// A snapshot of service "app" as the JSON status has it (its memberwise initializer is internal to WardenCore).
func snapshot(
    monitor: String = "monitored", failures: [String] = [], busy: Bool = false, backingOff: Bool = false, lastCheck: Double? = 100,
    checkSeconds: Double? = 0.004, startSeconds: Double? = nil, cpuPercent: Double? = nil, memoryBytes: UInt64? = nil
) throws -> ServiceSnapshot {
    var metrics: [String: Any] = [:]
    if let checkSeconds { metrics["checkSeconds"] = checkSeconds }
    if let startSeconds { metrics["startSeconds"] = startSeconds }
    if let cpuPercent { metrics["cpuPercent"] = cpuPercent }
    if let memoryBytes { metrics["memoryBytes"] = memoryBytes }
    var object: [String: Any] = [
        "name": "app", "type": "Process", "monitType": 3, "status": "OK", "monitor": monitor, "mode": "active", "restarts": 2,
        "failures": failures, "groups": [], "dependencies": [], "metrics": metrics, "events": [], "busy": busy,
        "acceptsTraffic": failures.isEmpty, "backingOff": backingOff,
    ]
    if let lastCheck { object["lastCheck"] = lastCheck }
    return try JSONDecoder().decode(ServiceSnapshot.self, from: JSONSerialization.data(withJSONObject: object))
}
