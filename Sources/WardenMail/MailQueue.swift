import Logging
import WardenConfig
import WardenPlatform
import FoundationEssentials

#if canImport(Glibc)
import Glibc
#endif

/// `set eventqueue basedir PATH [slots N]`: one file per mail, written atomically (mode 0600),
/// removed only after a server accepted it; the oldest is dropped when the queue is full.
final class MailQueue: Sendable {
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
        for name in names() where name.contains(".mail.tmp.") {
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

    /// Queue files, oldest first (names start with the time, then a counter).
    func entries() -> [String] {
        names().filter { $0.hasSuffix(".mail") }.sorted()
    }

    func add(_ message: MailMessage) {
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
        let name = "\(spec.tv_sec)\(String(repeating: "0", count: 9 - nanos.count))\(nanos)_\(String(generator.next() as UInt64, radix: 16)).mail"
        do {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            try AtomicFile.write(Array(try encoder.encode(message)), to: directory + "/" + name, mode: 0o600)
            logger.info("Adding event to the queue file \(directory)/\(name) for later delivery")
        } catch {
            logger.error("Mail: cannot write to the event queue '\(directory)': \(error); the alert is lost")
        }
    }

    func load(_ name: String) -> MailMessage? {
        guard let bytes = try? FileSystemReader().read(directory + "/" + name) else { return nil }
        guard let message = try? JSONDecoder().decode(MailMessage.self, from: Data(bytes)) else {
            logger.error("Mail: unreadable queue file \(name) moved aside")
            rename(directory + "/" + name, directory + "/" + name + ".bad")
            return nil
        }
        return message
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
