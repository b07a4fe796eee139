import WardenConfig
import WardenPlatform

/// `check host` ping and `check network` tests, in monit's words (`validate.c`: check_remote_host, check_net).
extension ConditionEvaluator {
    /// `if failed ping … [responsetime OP N]`: a reply passes unless its round trip misses the limit.
    static func ping(_ result: ProbeResult, responseTime limit: Comparison<Double>?) -> Outcome {
        guard result.succeeded else { return Outcome(failed: true, kind: .icmp, message: result.message) }
        guard let limit else {
            return Outcome(failed: false, kind: .icmp, message: "ping test succeeded [response time \(MonitFormat.milliseconds(milliseconds(result)))]")
        }
        return responseTime(result, limit, kind: .icmp)
    }

    /// A connection that succeeded held to `responsetime`: monit's words, " at ADDRESS" after them for a port.
    static func responseTime(_ result: ProbeResult, _ limit: Comparison<Double>, kind: EventKind, at address: String? = nil) -> Outcome {
        let taken = milliseconds(result)
        let shown = MonitFormat.milliseconds(taken)
        let bound = "[time \(limit.op.rawValue) \(MonitFormat.milliseconds(limit.value * 1000))]\(address.map { " at \($0)" } ?? "")"
        if limit.op.compare(taken, limit.value * 1000) {
            return Outcome(failed: false, kind: kind, message: "response time \(shown) succeeded \(bound)")
        }
        return Outcome(failed: true, kind: kind, message: "response time \(shown) doesn't match limit \(bound)")
    }

    private static func milliseconds(_ result: ProbeResult) -> Double {
        Double(result.responseTime.components.seconds) * 1000 + Double(result.responseTime.components.attoseconds) / 1e15
    }

    /// `if link down` (`up` false) or `if link up`; nil `sample`: the interface could not be read, which
    /// fails `link down` and passes `link up`, as in monit. `link down` also fails while the link is up
    /// but counts errors (per second, from `statistics`).
    static func link(up: Bool, sample: NetworkSample?, statistics: LinkStatistics?, interface: String) -> Outcome {
        guard let sample else {
            return Outcome(
                failed: !up, kind: .link,
                message: "link data collection failed -- Cannot read /sys/class/net/\(interface)/operstate -- No such file or directory")
        }
        if !up, sample.isUp, let statistics {
            for (name, direction) in [("upload", LinkStatistics.Direction.upload), ("download", .download)] {
                guard let errors = statistics.rate(direction, .errors), errors > 0 else { continue }
                return Outcome(failed: true, kind: .link, message: "\(MonitFormat.fixed(errors.rounded(.up), 0)) \(name) errors detected")
            }
        }
        return Outcome(failed: sample.isUp == up, kind: .link, message: sample.isUp ? "link up" : "link down")
    }

    /// `changed link [capacity]`: the speed or the duplex mode differs from the last cycle's; nil without
    /// a known speed (loopback, most virtual links) or in the first cycle.
    static func changedCapacity(now: NetworkSample, before: NetworkSample?) -> Outcome? {
        guard let speed = now.speedMbps, let before, let previousSpeed = before.speedMbps else { return nil }
        let mode = now.fullDuplex ? "full" : "half"
        if now.fullDuplex != before.fullDuplex {
            return Outcome(failed: true, kind: .speed, message: "link mode is now \(mode)-duplex", reporting: .changes)
        }
        if speed != previousSpeed {
            return Outcome(failed: true, kind: .speed, message: "link speed changed to \(speed) Mb/s", reporting: .changes)
        }
        return Outcome(
            failed: false, kind: .speed, message: "link speed has not changed since last cycle [current speed = \(speed) Mb/s]",
            reporting: .changes)
    }

    /// `saturation OP N%`: on a full-duplex link each direction against the speed, on a half-duplex one
    /// both together; nil without a known speed or before the second cycle.
    static func saturation(_ op: ComparisonOperator, _ limit: Double, statistics: LinkStatistics, fullDuplex: Bool) -> Outcome? {
        guard let upload = statistics.saturation(.upload), let download = statistics.saturation(.download) else { return nil }
        let bound = "[saturation \(op.rawValue) \(MonitFormat.fixed(limit))%]"
        guard fullDuplex else {
            let both = upload + download
            if op.compare(both, limit) {
                return Outcome(failed: true, kind: .saturation, message: "link saturation of \(MonitFormat.fixed(both))% matches limit \(bound)")
            }
            return Outcome(failed: false, kind: .saturation, message: "link saturation check succeeded [current saturation \(MonitFormat.fixed(both))%]")
        }
        for (name, value) in [("upload", upload), ("download", download)] where op.compare(value, limit) {
            return Outcome(failed: true, kind: .saturation, message: "link \(name) saturation of \(MonitFormat.fixed(value))% matches limit \(bound)")
        }
        return Outcome(
            failed: false, kind: .saturation,
            message: "link saturation check succeeded [current upload saturation \(MonitFormat.fixed(upload))%, download saturation \(MonitFormat.fixed(download))%]")
    }

    /// `upload|download OP N unit/s|packets/s`, over the last cycle; nil in the first.
    static func traffic(_ metric: ResourceMetric, _ op: ComparisonOperator, _ quantity: Quantity, statistics: LinkStatistics) -> Outcome? {
        let upload = metric == .upload
        let (limit, packets): (Double, Bool)
        if case .bytes(let bytes) = quantity {
            (limit, packets) = (bytes, false)
        } else if let rate = quantity.perSecond {
            (limit, packets) = (rate.value, rate.operations)
        } else {
            return nil  // refused by `warden -t` (ResourceMetric.accepts)
        }
        guard let rate = statistics.rate(upload ? .upload : .download, packets ? .packets : .bytes) else { return nil }
        return amount(upload: upload, total: false, op, limit: limit, packets: packets, value: rate.rounded(.down), window: "1 second")
    }

    /// `total upload|download OP N unit|packets in last N minute(s)|hour(s)|day`; nil in the first cycle.
    static func transferred(_ total: TrafficTotal, statistics: LinkStatistics) -> Outcome? {
        let direction: LinkStatistics.Direction = total.upload ? .upload : .download
        guard let value = statistics.total(direction, total.packets ? .packets : .bytes, inLast: Double(total.seconds)) else { return nil }
        return amount(
            upload: total.upload, total: true, total.op, limit: total.limit, packets: total.packets, value: value,
            window: "\(total.count) \(total.span.rawValue)")
    }

    /// monit's words for a rate or a total: "upload 240 B matches limit [upload rate > 1 B in last 1 second]",
    /// "total download packets 12 matches limit [download packets > 10 in last 2 hour]".
    private static func amount(
        upload: Bool, total: Bool, _ op: ComparisonOperator, limit: Double, packets: Bool, value: Double, window: String
    ) -> Outcome {
        let direction = upload ? "upload" : "download"
        let kind: EventKind = packets ? (upload ? .packetout : .packetin) : (upload ? .byteout : .bytein)
        let prefix = total ? "total " : ""
        let failed = op.compare(value, limit)
        let message: String
        if packets {
            let (count, bound) = (MonitFormat.fixed(value, 0), MonitFormat.fixed(limit, 0))
            message = failed
                ? "\(prefix)\(direction) packets \(count) matches limit [\(direction) packets \(op.rawValue) \(bound) in last \(window)]"
                : "\(prefix)\(direction) packets check succeeded [current \(direction) packets \(count) in last \(window)]"
        } else {
            message = failed
                ? "\(prefix)\(direction) \(MonitFormat.bytes(value)) matches limit [\(direction) rate \(op.rawValue) \(MonitFormat.bytes(limit)) in last \(window)]"
                : "\(prefix)\(direction) check succeeded [current \(direction) rate \(MonitFormat.bytes(value)) in last \(window)]"
        }
        return Outcome(failed: failed, kind: kind, message: message)
    }
}
