extension Validator {
    /// `instances`, `$PORT` and `pass … to service`: each copy of a service needs a pidfile of its own,
    /// `$PORT` means something only in a service with instances, and only such a service can be
    /// passed to without a URL.
    static func instances(_ configuration: Configuration, builders: [ServiceBuilder]) -> [Diagnostic] {
        var diagnostics: [Diagnostic] = []
        var instanced: Set<String> = []
        for builder in builders {
            let service = builder.service
            guard let instances = service.instances else {
                if service.usesInstancePort {
                    diagnostics.append(
                        .error(
                            .invalidValue, "'\(service.name)' uses $PORT but runs one process; $PORT is an instance's port",
                            at: service.location, length: builder.checkToken.length, hint: "add 'instances 1 ports 8080-8081'"))
                }
                continue
            }
            instanced.insert(service.name)
            let identifies: Bool = switch service.kind {
            case .process(.pidfile(let path)): path.contains("$PORT")
            case .process(.matching(let pattern)): pattern.contains("$PORT")
            default: false
            }
            if !identifies {
                diagnostics.append(
                    .error(
                        .invalidValue,
                        "'\(service.name)' runs \(instances.count) instances: its pidfile (or pattern) must contain $PORT, as two generations run side by side during a deploy",
                        at: service.location, length: builder.checkToken.length, hint: "e.g. 'with pidfile /run/\(service.name).$PORT.pid'"))
            }
        }
        for site in configuration.sites {
            for route in site.routes {
                guard case .instances(let service) = route.target, !instanced.contains(service),
                    builders.contains(where: { $0.service.name == service })
                else { continue }
                diagnostics.append(
                    .error(
                        .invalidValue, "site '\(site.name)' passes \(route.prefix) to service '\(service)', which has no 'instances … ports …'",
                        at: site.location, hint: "give the route a URL: 'pass \(route.prefix) to http://127.0.0.1:8080/ service \(service)'"))
            }
        }
        return diagnostics
    }
}
