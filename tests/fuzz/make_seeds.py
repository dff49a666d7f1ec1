#!/usr/bin/env python3
"""make_seeds.py - writes the checked-in seed inputs of tests/fuzz/corpus.

Each seed follows the input format its fuzzer documents at the top of its
.c file; this script is the one place that knows those byte layouts, so
the seeds can be regenerated after a format change. Run from anywhere:
    python3 tests/fuzz/make_seeds.py
Regression inputs (regress-*) are saved crash inputs, not generated here.
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def u16(v):
    return struct.pack('<H', v)


def u32(v):
    return struct.pack('<I', v)


def u64(v):
    return struct.pack('<Q', v)


def write(fuzzer, name, data):
    directory = os.path.join(HERE, 'corpus', fuzzer)
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, name), 'wb') as f:
        f.write(data)


# ---- fuzz_connect_line: count, lengths, text ----------------------------
def connect_line():
    write('fuzz_connect_line', 'whole', b'\x00CONNECT 52\n')
    write('fuzz_connect_line', 'pieces-data-after',
          b'\x03\x01\x02\x05connect \t 1234 \r\nhello')
    write('fuzz_connect_line', 'byte-pieces', b'\x01\x01CONNECT 52\n')
    write('fuzz_connect_line', 'port-max', b'\x02\x07\x03CONNECT 4294967295\n')
    write('fuzz_connect_line', 'port-overflow', b'\x00CONNECT 4294967296\n')
    write('fuzz_connect_line', 'overlong',
          b'\x00CONNECT          ' + b' ' * 20 + b'1\n')


# ---- fuzz_ipc: (shape, length, bytes, fd kinds)* -------------------------
def envelope(field, body):
    return b'\x08\x01' + bytes([field << 3 | 2, len(body)]) + body


def ipc():
    connect_request = envelope(5, b'\x08\x07\x10\x34')
    connect_reply = envelope(6, b'\x08\x07')
    host_stream = envelope(4, b'')
    vmm_attach = envelope(2, b'')
    stats_request = envelope(7, b'\x08\x2a\x10\x01')
    stats_reply = envelope(8, b'\x08\x2a\x12\x03\x08\x01\x10')
    accept_control = envelope(9, b'\x08\x01')

    def datagram(data, fds=()):
        return bytes([len(fds)]) + u16(len(data)) + data + bytes(fds)
    write('fuzz_ipc', 'connect-request', datagram(connect_request))
    write('fuzz_ipc', 'reply-with-fd', datagram(connect_reply, [2]))
    write('fuzz_ipc', 'host-stream-fd', datagram(host_stream, [2]))
    write('fuzz_ipc', 'vmm-attach-two-fds', datagram(vmm_attach, [2, 0]))
    write('fuzz_ipc', 'stats', datagram(stats_request) + datagram(stats_reply))
    write('fuzz_ipc', 'accept-control', datagram(accept_control))
    write('fuzz_ipc', 'wrong-version', datagram(b'\x08\x02' + connect_request[2:]))
    write('fuzz_ipc', 'oversized', b'\x80' + u16(len(stats_reply)) + stats_reply)


# ---- fuzz_control_request: clients-1, (what, length, bytes)* -------------
def control():
    def piece(slot, data):
        return bytes([slot << 4, len(data)]) + data
    request = b'\x08\x01'
    framed = u32be(len(request)) + request
    write('fuzz_control_request', 'stats',
          b'\x00' + piece(0, framed) + b'\x00' + u16(0))
    conns = b'\x08\x01\x10\x01'
    write('fuzz_control_request', 'conns-in-pieces',
          b'\x01' + piece(0, u32be(4)[:2]) + piece(1, u32be(4) + conns) +
          b'\x00' + u16(4) + b'\x0a\x02\x08\x01' + piece(0, u32be(4)[2:] + conns) +
          b'\x01' + u32(0x1234) + u16(0))
    write('fuzz_control_request', 'version-mismatch',
          b'\x00' + piece(0, u32be(2) + b'\x08\x02'))
    write('fuzz_control_request', 'too-large', b'\x00' + piece(0, u32be(4096)))


def u32be(v):
    return struct.pack('>I', v)


# ---- fuzz_vhost_user: queue-size selector, (spec, length, fds, bytes)* ---
VERSION = 0x1
NEED_REPLY = 0x8


def vu(request, payload=b'', flags=VERSION):
    return u32(request) + u32(flags) + u32(len(payload)) + payload


def chunk(data, fds=b'', count=0):
    return bytes([count]) + u16(len(data)) + fds + data


EVENTFD = b'\x01'


def memfd(pages):
    return b'\x00' + u16(pages)


def qemu_setup(memory_pages=64, region_size=0x40000, extra=b''):
    protocol = (1 << 0) | (1 << 3) | (1 << 9)
    features = (1 << 32) | (1 << 30) | (1 << 29) | (1 << 28)
    s = b''
    s += chunk(vu(1))
    s += chunk(vu(15))
    s += chunk(vu(16, u64(protocol)))
    s += chunk(vu(17))
    s += chunk(vu(3))
    s += chunk(vu(1))
    for i in range(2):
        s += chunk(vu(13, u64(i)), EVENTFD, 1)
        s += chunk(vu(14, u64(i)), EVENTFD, 1)
    s += chunk(vu(24, u32(0) + u32(8) + u32(0) + bytes(8)))
    for i in range(2):
        s += chunk(vu(13, u64(i)), EVENTFD, 1)
    s += chunk(vu(2, u64(features)))
    table = u32(1) + u32(0) + u64(0) + u64(region_size) + u64(0x7f0000000000) + u64(0)
    s += chunk(vu(5, table, VERSION | NEED_REPLY), memfd(memory_pages), 1)
    for i in range(2):
        base = 0x7f0000000000 + i * 0x2000
        s += chunk(vu(8, u32(i) + u32(128)))
        s += chunk(vu(10, u32(i) + u32(0)))
        s += chunk(vu(9, u32(i) + u32(0) + u64(base) + u64(base + 0x1000) +
                      u64(base + 0x800) + u64(i * 0x2000 + 0x1000)))
        s += chunk(vu(12, u64(i)), EVENTFD, 1)
    for i in range(2):
        s += chunk(vu(18, u32(i) + u32(1)))
    for i in range(2):
        s += chunk(vu(13, u64(i)), EVENTFD, 1)
    return b'\x0a' + s + extra


def vhost_user():
    write('fuzz_vhost_user', 'qemu72-setup', qemu_setup())
    stop = b''
    for i in range(2):
        stop += chunk(vu(11, u32(i) + u32(0)))
    write('fuzz_vhost_user', 'qemu72-setup-stop', qemu_setup(extra=stop + chunk(vu(4))))
    # QEMU's SET_MEM_TABLE and ring set-up all in one write
    whole = qemu_setup()
    write('fuzz_vhost_user', 'memfd-smaller-than-region',
          qemu_setup(memory_pages=1, region_size=0x40000))
    write('fuzz_vhost_user', 'mem-table-no-fd',
          b'\x0a' + chunk(vu(3)) + chunk(vu(5, u32(1) + u32(0) + u64(0) + u64(0x1000) +
                                        u64(0x1000) + u64(0))))
    write('fuzz_vhost_user', 'size-lies',
          b'\x0a' + chunk(u32(8) + u32(1) + u32(200) + u32(0) + u32(64)))
    write('fuzz_vhost_user', 'kick-nofd-flag',
          b'\x0a' + chunk(vu(3)) + chunk(vu(12, u64(0x100))) + chunk(vu(12, u64(1)), EVENTFD * 2, 2))
    del whole


# ---- fuzz_packets --------------------------------------------------------
OP = {'REQUEST': 1, 'RESPONSE': 2, 'RST': 3, 'SHUTDOWN': 4, 'RW': 5,
      'CREDIT_UPDATE': 6, 'CREDIT_REQUEST': 7}


def guest(op, payload=b'', local=0, peer=0, flags=0, credsel=3):
    """local: 0 -> port 52, 2 -> 2^30; peer: 0 -> 1024. credsel 3:
    buf_alloc 256 KiB, fwd_cnt = what the guest received."""
    return (b'\x00' + bytes([OP[op] - 1, peer | (local << 4),
                             credsel | (flags << 6), 1]) +
            u16(len(payload)) + payload)


def post_rx(count=8, full=True):
    return b'\x03' + bytes([count - 1]) + bytes([1 if full else 0]) * count


def packets():
    config = 2 | (2 << 2) | 0x10 | 0x20
    linux = bytes([config])
    linux += post_rx()
    linux += guest('REQUEST')
    linux += b'\x04\x01\x00'                   # broker connects it
    linux += guest('RW', b'hello\n')
    linux += b'\x06\x05'                       # host reads
    linux += b'\x06\x00' + u16(6) + b'world\n'  # host writes
    linux += post_rx(4)
    linux += guest('CREDIT_UPDATE')
    linux += guest('SHUTDOWN', flags=3)
    linux += b'\x06\x04'                       # host closes
    linux += guest('RST')
    write('fuzz_packets', 'linux-guest-connect', linux)

    host = bytes([config])
    host += post_rx()
    host += b'\x05\x0dCONNECT 1024\n'
    host += guest('RESPONSE', local=2)
    host += b'\x06\x00' + u16(4) + b'ping'
    host += guest('RW', b'pong', local=2)
    host += b'\x06\x05'
    host += b'\x06\x03'                        # host half-closes
    host += post_rx(4)
    host += guest('SHUTDOWN', local=2, flags=3)
    host += guest('RST', local=2)
    write('fuzz_packets', 'linux-host-connect', host)

    refused = bytes([config]) + post_rx() + guest('REQUEST') + b'\x04\x00\x00'
    refused += guest('RW', b'late')            # to a dead connection
    write('fuzz_packets', 'refused-then-data', refused)

    credit = bytes([config]) + post_rx(16) + guest('REQUEST', credsel=1)
    credit += b'\x04\x01\x00'
    credit += b'\x06\x00' + u16(4000) + b'x' * 4000
    credit += guest('CREDIT_UPDATE', credsel=1) + post_rx(16)
    write('fuzz_packets', 'small-guest-credit', credit)

    write('fuzz_packets', 'stats-request', bytes([config]) + b'\x08' + u32(1) + b'\x01')


# ---- fuzz_virtq ------------------------------------------------------------
def virtq():
    gpa = 0x10000
    memory = bytearray(4096)

    def desc(index, addr, length, flags, next_index, table=0):
        struct.pack_into('<QIHH', memory, table + 16 * index, addr, length, flags, next_index)
    NEXT, WRITE, INDIRECT = 1, 2, 4
    desc(0, gpa + 0x400, 44, NEXT, 1)
    desc(1, gpa + 0x500, 100, 0, 0)
    desc(2, gpa + 0x600, 32, INDIRECT, 0)
    desc(0, gpa + 0x700, 16, NEXT, 1, table=0x600)
    desc(1, gpa + 0x800, 16, 0, 0, table=0x600)
    desc(3, gpa + 0x900, 8, NEXT, 3)            # a loop
    desc(4, gpa + 0xff0, 0x100, 0, 0)            # runs past the end
    desc(5, gpa + 0xa00, 8, WRITE, 0)            # wrong direction
    struct.pack_into('<HH5H', memory, 0x100, 0, 5, 0, 2, 3, 4, 5)
    config = (3 << 1) | 0x20 | 0x40              # size 8, event_idx, indirect
    layout = 0x40 | 0x20                         # aligned offsets, call fd
    seed = bytes([config, layout]) + u16(4096 - 256) + u16(4096) + bytes(memory)
    seed += u16(gpa >> 12) + b'\x00'             # gpa, user address
    seed += u16(0) + u16(0x100) + u16(0x200)     # desc, avail, used
    seed += u16(0) + b'\x07'                     # base, iov capacity 8
    seed += b'\x02\x82' + u32(144) + b'\x02\x02\x02\x04\x05'
    seed += b'\x00' + u16(0x102) + b'\x01' + u16(7)   # guest bumps avail idx
    seed += b'\x02\x02\x03' + u16(1) + u32(0) + b'\x05'
    write('fuzz_virtq', 'direct-indirect-loop', seed)
    two = bytes([config, layout | 0x04 | 0x08 | 0x10]) + u16(4096 - 256) + u16(4096)
    two += bytes(memory) + u16(gpa >> 12) + b'\x00' + u16(0x800)
    two += u16(0) + u16(0x100) + u16(0x200) + u16(0) + b'\x07' + b'\x02' * 6
    write('fuzz_virtq', 'two-adjacent-regions', two)
    wrap = bytes([config, layout]) + u16(4096 - 256) + u16(4096) + bytes(memory)
    wrap += u16(gpa >> 12) + b'\x00' + u16(0) + u16(0x100) + u16(0x200)
    wrap += u16(0xfffe) + b'\x07' + b'\x00' + u16(0x102) + b'\x01' + u16(0x0003)
    wrap += b'\x02' * 6 + b'\x04\x05'
    write('fuzz_virtq', 'index-wrap', wrap)


if __name__ == '__main__':
    connect_line()
    ipc()
    control()
    vhost_user()
    packets()
    virtq()
