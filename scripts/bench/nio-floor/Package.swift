// swift-tools-version: 6.1
import PackageDescription

// A benchmark tool, not part of warden: see Sources/nio-floor/main.swift.
let package = Package(
    name: "nio-floor",
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2")
    ],
    targets: [
        .executableTarget(
            name: "nio-floor",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            // Linked as warden's release binary is: the Swift runtime inside, so its calls are direct.
            linkerSettings: [.unsafeFlags(["-static-stdlib", "-use-ld=lld"])]
        )
    ]
)
