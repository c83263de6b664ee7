"""Pure-Python LZF codec, the compression used by PCD ``DATA binary_compressed``.

Kept here (no C extension) so every PCD variant reads without optional packages.
Stream format (liblzf): a control byte ``c < 32`` starts ``c + 1`` literal bytes; otherwise
``len = c >> 5`` (7 means one more length byte follows) and a 13-bit back offset
``((c & 31) << 8 | next_byte) + 1``; the copy length is ``len + 2``.
"""
from __future__ import annotations

_MAX_OFF = 1 << 13  # 8192: distance to the referenced byte is at most this
_MAX_LIT = 32
_MAX_REF = 264  # 7 + 255 + 2


class LZFError(ValueError):
    """The byte stream is not valid LZF (truncated or corrupt)."""


def lzf_decompress(data: bytes | bytearray | memoryview, expected_size: int) -> bytes:
    """Decompress an LZF stream that must expand to exactly ``expected_size`` bytes."""
    src = bytes(data)
    n = len(src)
    out = bytearray()
    ip = 0
    while ip < n:
        ctrl = src[ip]
        ip += 1
        if ctrl < 32:  # literal run
            run = ctrl + 1
            if ip + run > n:
                raise LZFError(f"literal run of {run} bytes at input offset {ip - 1} passes the end "
                               f"of the {n}-byte stream (truncated data)")
            out += src[ip:ip + run]
            ip += run
        else:  # back reference
            length = ctrl >> 5
            if length == 7:
                if ip >= n:
                    raise LZFError("stream ends inside a back-reference length (truncated data)")
                length += src[ip]
                ip += 1
            if ip >= n:
                raise LZFError("stream ends inside a back-reference offset (truncated data)")
            ref = len(out) - (((ctrl & 0x1F) << 8) | src[ip]) - 1
            ip += 1
            length += 2
            if ref < 0:
                raise LZFError(f"back reference points {-ref} bytes before the start of the output "
                               "(corrupt data)")
            end = ref + length
            if end <= len(out):
                out += out[ref:end]
            else:  # overlapping copy repeats the pattern between ref and the write position
                pattern = bytes(out[ref:])
                reps = -(-length // len(pattern))
                out += (pattern * reps)[:length]
        if len(out) > expected_size:
            raise LZFError(f"output exceeds the declared {expected_size} bytes (corrupt data)")
    if len(out) != expected_size:
        raise LZFError(f"decompressed {len(out)} bytes but the header declares {expected_size} "
                       "(truncated or corrupt data)")
    return bytes(out)


def lzf_compress(data: bytes | bytearray | memoryview) -> bytes:
    """Compress ``data`` into a valid LZF stream (greedy, 3-byte hash chains of length 1).

    Pure Python: about 1-3 MB/s, fine for fixtures and moderate clouds. The output always
    decodes with liblzf / PCL; on incompressible input it is ~3 % larger than the input.
    """
    src = bytes(data)
    n = len(src)
    out = bytearray()
    table: dict[bytes, int] = {}
    lit_start = 0
    i = 0

    def flush_literals(end: int) -> None:
        s = lit_start
        while s < end:
            chunk = src[s:min(end, s + _MAX_LIT)]
            out.append(len(chunk) - 1)
            out.extend(chunk)
            s += len(chunk)

    while i + 2 < n:
        key = src[i:i + 3]
        ref = table.get(key)
        table[key] = i
        if ref is not None and i - ref <= _MAX_OFF:
            max_len = min(n - i, _MAX_REF)
            length = 3
            # extend in 16-byte slices (C-speed compare), then byte by byte
            while length + 16 <= max_len and src[ref + length:ref + length + 16] == src[i + length:i + length + 16]:
                length += 16
            while length < max_len and src[ref + length] == src[i + length]:
                length += 1
            flush_literals(i)
            off = i - ref - 1
            code = length - 2
            if code < 7:
                out.append((code << 5) | (off >> 8))
            else:
                out.append((7 << 5) | (off >> 8))
                out.append(code - 7)
            out.append(off & 0xFF)
            i += length
            lit_start = i
        else:
            i += 1
    flush_literals(n)
    return bytes(out)
