// swift-tools-version: 6.1
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "warden",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "warden", targets: ["warden"]),
        .library(name: "WardenConfig", targets: ["WardenConfig"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    ],
    targets: [
        .target(name: "WardenConfig", swiftSettings: swiftSettings),
        .executableTarget(
            name: "warden",
            dependencies: [
                "WardenConfig",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "WardenConfigTests",
            dependencies: ["WardenConfig", "WardenTestSupport"],
            exclude: ["Corpus"],
            swiftSettings: swiftSettings
        ),
        .target(name: "WardenTestSupport", path: "Tests/WardenTestSupport", swiftSettings: swiftSettings),
        .testTarget(
            name: "WardenIntegrationTests",
            dependencies: ["WardenConfig", "WardenTestSupport"],
            swiftSettings: swiftSettings
        ),
    ],
    swiftLanguageModes: [.v6]
)
