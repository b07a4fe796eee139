/// Base64 for HTTP Basic credentials (both directions).
public enum Base64 {
    public static func decode(_ text: String) -> [UInt8]? {
        var values: [UInt8] = []
        for scalar in text.unicodeScalars {
            switch scalar {
            case "A"..."Z": values.append(UInt8(scalar.value - 65))
            case "a"..."z": values.append(UInt8(scalar.value - 71))
            case "0"..."9": values.append(UInt8(scalar.value + 4))
            case "+", "-": values.append(62)
            case "/", "_": values.append(63)
            case "=": continue
            default: return nil
            }
        }
        var out: [UInt8] = []
        var index = 0
        while index + 1 < values.count {
            let chunk = values[index..<min(index + 4, values.count)]
            var value: UInt32 = 0
            for (offset, v) in chunk.enumerated() { value |= UInt32(v) << (18 - 6 * UInt32(offset)) }
            out.append(UInt8((value >> 16) & 0xff))
            if chunk.count > 2 { out.append(UInt8((value >> 8) & 0xff)) }
            if chunk.count > 3 { out.append(UInt8(value & 0xff)) }
            index += 4
        }
        return out
    }

    public static func encode(_ bytes: [UInt8]) -> String {
        let table = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
        var out = ""
        var index = 0
        while index < bytes.count {
            let chunk = bytes[index..<min(index + 3, bytes.count)]
            var value: UInt32 = 0
            for (offset, byte) in chunk.enumerated() { value |= UInt32(byte) << (16 - 8 * UInt32(offset)) }
            for position in 0..<4 {
                out.append(position <= chunk.count ? table[Int((value >> (18 - 6 * UInt32(position))) & 0x3f)] : "=")
            }
            index += 3
        }
        return out
    }
}

