/// MD5 (RFC 1321), for Apache's `$apr1$` htpasswd hashes only; never used where strength matters.
enum MD5 {
    private static let shifts: [UInt32] = [
        7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20,
        4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
    ]
    private static let constants: [UInt32] = (0..<64).map { UInt32(truncatingIfNeeded: Int64(abs(sin(Double($0 + 1))) * 4_294_967_296)) }

    static func digest(_ message: [UInt8]) -> [UInt8] {
        var data = message
        let bitLength = UInt64(message.count) * 8
        data.append(0x80)
        while data.count % 64 != 56 { data.append(0) }
        for index in 0..<8 { data.append(UInt8((bitLength >> (8 * UInt64(index))) & 0xff)) }
        var a0: UInt32 = 0x6745_2301
        var b0: UInt32 = 0xefcd_ab89
        var c0: UInt32 = 0x98ba_dcfe
        var d0: UInt32 = 0x1032_5476
        for chunk in stride(from: 0, to: data.count, by: 64) {
            var words = [UInt32](repeating: 0, count: 16)
            for index in 0..<16 {
                let base = chunk + index * 4
                words[index] = UInt32(data[base]) | UInt32(data[base + 1]) << 8 | UInt32(data[base + 2]) << 16 | UInt32(data[base + 3]) << 24
            }
            var (a, b, c, d) = (a0, b0, c0, d0)
            for i in 0..<64 {
                var f: UInt32
                let g: Int
                switch i {
                case 0..<16: f = (b & c) | (~b & d); g = i
                case 16..<32: f = (d & b) | (~d & c); g = (5 * i + 1) % 16
                case 32..<48: f = b ^ c ^ d; g = (3 * i + 5) % 16
                default: f = c ^ (b | ~d); g = (7 * i) % 16
                }
                f = f &+ a &+ constants[i] &+ words[g]
                a = d
                d = c
                c = b
                b = b &+ (f << shifts[i] | f >> (32 - shifts[i]))
            }
            a0 = a0 &+ a
            b0 = b0 &+ b
            c0 = c0 &+ c
            d0 = d0 &+ d
        }
        return [a0, b0, c0, d0].flatMap { word in (0..<4).map { UInt8((word >> (8 * UInt32($0))) & 0xff) } }
    }
}

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
        var alternate = MD5.digest(pw + saltBytes + pw)
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
        alternate = MD5.digest(context)
        for round in 0..<1000 {
            var next: [UInt8] = round & 1 != 0 ? pw : alternate
            if round % 3 != 0 { next += saltBytes }
            if round % 7 != 0 { next += pw }
            next += round & 1 != 0 ? alternate : pw
            alternate = MD5.digest(next)
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
