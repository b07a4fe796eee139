import WardenConfig

/// The front proxy, as the supervisor sees it around a planned stop. warden is both, so before a stop
/// program ends an app, new requests for it wait (as they do while it is down) and the ones it is
/// serving finish: a restart then resets no client connection.
public protocol TrafficControl: Sendable {
    /// Holds new requests for `service` and returns once none is in flight, or after `timeout`, with
    /// the requests it saw through. The hold ends when the supervisor reports the service accepting
    /// traffic again. (Clients pinned to an instance a deploy took out of service are the proxy's
    /// exception: they reach it until they go quiet.)
    @discardableResult
    func drain(_ service: String, timeout: Duration) async -> Int
    /// From now on, `service`'s requests go to these instances (a deploy's switch).
    func route(_ service: String, to instances: [InstanceIdentity])
    /// A service started or stopped accepting traffic (its process found, gone, or being stopped):
    /// held requests go on at once rather than at the next report.
    func serviceUp(_ service: String, _ up: Bool)
}
