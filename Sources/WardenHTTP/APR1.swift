import Crypto

#if canImport(Glibc)
import Glibc
#endif

/// Apache's `$apr1$salt$hash` (MD5-crypt with the apr1 magic).
enum APR1 {
    private static let alphabet = Array("./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz".utf8)

    static func hash(password: String, salt: String) -> String {
        let pw = Array(password.utf8)
        let saltBytes = Array(salt.utf8.prefix(8))
        let magic = Array("$apr1$".utf8)
        var alternate = md5(pw + saltBytes + pw)
        var context = pw + magic + saltBytes
        var length = pw.count
        while length > 0 {
            context += alternate.prefix(min(16, length))
            length -= 16
        }
        var bits = pw.count
        while bits > 0 {
            context.append(bits & 1 != 0 ? 0 : (pw.first ?? 0))
            bits >>= 1
        }
        alternate = md5(context)
        for round in 0..<1000 {
            var next: [UInt8] = round & 1 != 0 ? pw : alternate
            if round % 3 != 0 { next += saltBytes }
            if round % 7 != 0 { next += pw }
            next += round & 1 != 0 ? alternate : pw
            alternate = md5(next)
        }
        var out = ""
        func encode(_ a: Int, _ b: Int, _ c: Int, _ count: Int) {
            var value = Int(alternate[a]) << 16 | Int(alternate[b]) << 8 | Int(alternate[c])
            for _ in 0..<count {
                out.append(Character(UnicodeScalar(alphabet[value & 0x3f])))
                value >>= 6
            }
        }
        encode(0, 6, 12, 4)
        encode(1, 7, 13, 4)
        encode(2, 8, 14, 4)
        encode(3, 9, 15, 4)
        encode(4, 10, 5, 4)
        var last = Int(alternate[11])
        for _ in 0..<2 {
            out.append(Character(UnicodeScalar(alphabet[last & 0x3f])))
            last >>= 6
        }
        return "$apr1$\(String(decoding: saltBytes, as: UTF8.self))$\(out)"
    }
}

/// MD5, for Apache's `$apr1$` htpasswd hashes only; never used where strength matters.
private func md5(_ bytes: [UInt8]) -> [UInt8] {
    Array(Insecure.MD5.hash(data: bytes))
}
