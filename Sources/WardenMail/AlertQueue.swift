import Logging
import WardenConfig
import WardenPlatform
import FoundationEssentials

#if canImport(Glibc)
import Glibc
#endif

/// `set eventqueue basedir PATH [slots N]`: one file per alert and channel, written atomically
/// (mode 0600), removed only after the channel took it; the oldest is dropped when the queue is full.
/// A mail is `*.mail` (a `MailMessage`, as warden has always written them), a webhook or
/// Alertmanager post `*.post` (an `HTTPPost`).
final class AlertQueue: Sendable {
    let directory: String
    let slots: Int?
    let logger: Logger

    init(settings: EventQueueSettings, logger: Logger) {
        directory = settings.basedir
        slots = settings.slots
        self.logger = logger
        mkdir(directory, 0o700)
        removeUnfinishedWrites()
    }

    /// A warden killed in the middle of queueing a mail leaves its temporary file (the mail itself was
    /// never queued); only one warden uses a queue, so at start any such file is litter.
    private func removeUnfinishedWrites() {
        for name in names() where name.contains(".mail.tmp.") || name.contains(".post.tmp.") {
            unlink(directory + "/" + name)
            logger.warning("Mail: removed '\(name)', an unfinished queue write of an interrupted warden")
        }
    }

    /// Every name in the queue directory.
    private func names() -> [String] {
        guard let handle = opendir(directory) else { return [] }
        defer { closedir(handle) }
        var names: [String] = []
        while let entry = readdir(handle) {
            names.append(withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) })
        }
        return names
    }

    /// Queue files, oldest first (names start with the time, then a random part).
    func entries() -> [String] {
        names().filter { $0.hasSuffix(".mail") || $0.hasSuffix(".post") }.sorted()
    }

    func add(_ item: Outgoing) {
        if let slots {
            let existing = entries()
            if existing.count >= slots {
                for old in existing.prefix(existing.count - slots + 1) {
                    unlink(directory + "/" + old)
                    logger.error("Mail: event queue is full (\(slots) slots); dropped the oldest alert \(old)")
                }
            }
        }
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        var generator = SystemRandomNumberGenerator()
        let nanos = String(spec.tv_nsec)
        let stem = "\(spec.tv_sec)\(String(repeating: "0", count: 9 - nanos.count))\(nanos)_\(String(generator.next() as UInt64, radix: 16))"
        do {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            let (name, bytes) =
                switch item {
                case .mail(let message): (stem + ".mail", try encoder.encode(message))
                case .post(let post): (stem + ".post", try encoder.encode(post))
                }
            try AtomicFile.write(Array(bytes), to: directory + "/" + name, mode: 0o600)
            logger.info("Adding event to the queue file \(directory)/\(name) for later delivery")
        } catch {
            logger.error("Alert: cannot write to the event queue '\(directory)': \(error); the alert is lost")
        }
    }

    func load(_ name: String) -> Outgoing? {
        guard let bytes = try? FileSystemReader().read(directory + "/" + name) else { return nil }
        let decoder = JSONDecoder()
        let item: Outgoing? =
            name.hasSuffix(".post")
            ? (try? decoder.decode(HTTPPost.self, from: Data(bytes))).map(Outgoing.post)
            : (try? decoder.decode(MailMessage.self, from: Data(bytes))).map(Outgoing.mail)
        guard let item else {
            logger.error("Alert: unreadable queue file \(name) moved aside")
            rename(directory + "/" + name, directory + "/" + name + ".bad")
            return nil
        }
        return item
    }

    func remove(_ name: String) {
        unlink(directory + "/" + name)
        let fd = open(directory, O_RDONLY | O_DIRECTORY)
        if fd >= 0 {
            fsync(fd)
            close(fd)
        }
    }
}
