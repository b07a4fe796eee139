/// Checks that need the whole configuration: names, dependencies, and what a check needs to act.
enum Validator {
    static func validate(_ configuration: Configuration, builders: [ServiceBuilder]) -> [Diagnostic] {
        var diagnostics: [Diagnostic] = []
        var firstByName: [String: ServiceBuilder] = [:]
        for builder in builders {
            let service = builder.service
            if let first = firstByName[service.name] {
                diagnostics.append(
                    .error(
                        .duplicateService, "duplicate service name '\(service.name)'", at: service.location,
                        length: builder.checkToken.length,
                        notes: [.note(.firstDefined, "first defined here", at: first.service.location)]))
            } else {
                firstByName[service.name] = builder
            }
            if case .process = service.kind, service.start == nil, service.mode == .active {
                diagnostics.append(
                    .warning(
                        .missingStartProgram,
                        "process '\(service.name)' has no start program; warden can report it down but cannot start it",
                        at: service.location, length: builder.checkToken.length,
                        hint: "add 'start program = \"/etc/init.d/\(service.name) start\"'"))
            }
        }
        let names = Set(firstByName.keys)
        for builder in builders {
            for dependency in builder.service.dependencies where !names.contains(dependency) {
                let location = builder.dependencyLocations[dependency] ?? builder.service.location
                let near = names.sorted().map { (name: $0, distance: editDistance(dependency.lowercased(), $0.lowercased())) }
                    .filter { $0.distance <= Swift.max(1, $0.name.count / 3) }.min { $0.distance < $1.distance }
                diagnostics.append(
                    .error(
                        .unknownDependency, "'\(builder.service.name)' depends on '\(dependency)', which is not defined",
                        at: location, length: dependency.utf8.count, hint: near.map { "did you mean '\($0.name)'?" }))
            }
        }
        diagnostics += dependencyCycles(firstByName)
        for site in configuration.sites {
            for service in site.services where !names.contains(service) {
                diagnostics.append(
                    .error(.unknownDependency, "site '\(site.name)' passes to service '\(service)', which is not defined", at: site.location))
            }
        }
        if !configuration.sites.isEmpty, configuration.proxy == nil {
            diagnostics.append(
                .warning(.invalidValue, "'check site' without 'set proxy': no proxy will listen", at: configuration.sites[0].location,
                    hint: "add 'set proxy listen 127.0.0.1 port 8000'"))
        }
        return diagnostics
    }

    /// Reports each cycle once, at the service where it is first entered.
    private static func dependencyCycles(_ services: [String: ServiceBuilder]) -> [Diagnostic] {
        enum Mark { case visiting, done }
        var marks: [String: Mark] = [:]
        var diagnostics: [Diagnostic] = []
        var stack: [String] = []

        func visit(_ name: String) {
            guard let builder = services[name] else { return }
            marks[name] = .visiting
            stack.append(name)
            for dependency in builder.service.dependencies {
                switch marks[dependency] {
                case .visiting:
                    let cycle = stack[stack.lastIndex(of: dependency)!...] + [dependency]
                    diagnostics.append(
                        .error(
                            .dependencyCycle, "dependency cycle: \(cycle.joined(separator: " -> "))",
                            at: builder.dependencyLocations[dependency] ?? builder.service.location,
                            length: dependency.utf8.count))
                case .done:
                    break
                case nil:
                    visit(dependency)
                }
            }
            stack.removeLast()
            marks[name] = .done
        }

        for name in services.keys.sorted() where marks[name] == nil {
            visit(name)
        }
        return diagnostics
    }
}
