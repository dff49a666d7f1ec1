/* SPDX-License-Identifier: MIT */
/*
 * guest_agent.c - the e2e test peer, built static (gcc -static).
 *
 * Owns: both ends of the real-guest scenarios.  Inside the guest (started by
 * the initramfs /init) it speaks AF_VSOCK; on the host (run by run_smoke.sh)
 * the same binary speaks the hybrid-vsock Unix-socket protocol, so both sides
 * share one pattern generator and one set of checks.
 *
 * Must never: block without a bound (every wait is a poll() with a timeout),
 * or print a result line in more than one write() (serial console lines from
 * the kernel may interleave).
 *
 * Result lines:  E2E-RESULT <name> PASS|FAIL <detail>
 * Sync lines:    E2E-READY <name>   (guest listener is listening)
 *
 * Guest modes (AF_VSOCK, host is CID 2):
 *   listen NAME PORT KIND [MIB]     accept one connection on PORT
 *   connect NAME PORT KIND [MIB]    connect to CID 2 PORT
 *   refused NAME PORT MAXMS         connect must fail with ECONNRESET /
 *                                   ECONNREFUSED within MAXMS milliseconds
 * Host modes (Unix sockets, vsockmuxd hybrid protocol):
 *   host-connect NAME UDS PORT KIND [MIB]   "CONNECT PORT\n", expect "OK n\n"
 *   host-listen NAME PATH KIND [MIB]        listen on PATH (<uds>_PORT)
 *   host-refused NAME UDS PORT MAXMS        CONNECT to a port nobody listens
 *                                           on: socket closed, no "OK"
 * KIND:
 *   echo   initiator "PING <name>\n" -> acceptor "PONG <name>\n", then a
 *          69,999-byte pattern guest->host then host->guest, then the
 *          initiator closes and the acceptor must see EOF.
 *   bulk   MIB MiB guest->host, then MIB MiB host->guest, content-checked,
 *          MiB/s reported by the receiving side of each phase.
 *   echo and bulk both end with the initiator closing and the acceptor
 *   checking for EOF.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <linux/vm_sockets.h>

#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif

#define IO_TIMEOUT_MS   60000   /* idle bound on any single wait */
#define ACCEPT_TIMEOUT_MS 240000
#define ECHO_BLOB       69999   /* crosses many 3776-byte RX buffers */
#define SEED_G2H        0x5a17u
#define SEED_H2G        0xc0deu

static int is_guest;            /* which side we are: for phase roles */

static void out(const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if (n > (int)sizeof buf - 2)
        n = sizeof buf - 2;
    buf[n++] = '\n';
    ssize_t w = write(1, buf, (size_t)n);
    (void)w;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Deterministic, not periodic at any power of two up to 2^32: the 8-byte
 * word holding stream byte i is a hash of (seed, i / 8), little-endian. */
static inline uint64_t pat_word(uint32_t seed, uint64_t w)
{
    uint64_t x = w * 0x9e3779b97f4a7c15ull ^ ((uint64_t)seed << 32);
    x ^= x >> 29;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 32;
    return x;
}

static inline uint8_t pat(uint32_t seed, uint64_t i)
{
    return (uint8_t)(pat_word(seed, i >> 3) >> ((i & 7) * 8));
}

static void fill(uint8_t *b, size_t n, uint32_t seed, uint64_t off)
{
    size_t k = 0;
    while (k < n && ((off + k) & 7))
        b[k] = pat(seed, off + k), k++;
    for (; k + 8 <= n; k += 8) {
        uint64_t w = pat_word(seed, (off + k) >> 3);
        memcpy(b + k, &w, 8);
    }
    for (; k < n; k++)
        b[k] = pat(seed, off + k);
}

/* returns index of first mismatch or -1 */
static long check(const uint8_t *b, size_t n, uint32_t seed, uint64_t off)
{
    size_t k = 0;
    while (k < n && ((off + k) & 7)) {
        if (b[k] != pat(seed, off + k))
            return (long)k;
        k++;
    }
    for (; k + 8 <= n; k += 8) {
        uint64_t w = pat_word(seed, (off + k) >> 3), g;
        memcpy(&g, b + k, 8);
        if (g != w)
            break;
    }
    for (; k < n; k++)
        if (b[k] != pat(seed, off + k))
            return (long)k;
    return -1;
}

static int wait_fd(int fd, short ev, int ms)
{
    struct pollfd p = { .fd = fd, .events = ev };
    for (;;) {
        int r = poll(&p, 1, ms);
        if (r < 0 && errno == EINTR)
            continue;
        if (r == 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        return r < 0 ? -1 : 0;
    }
}

static int write_all(int fd, const void *buf, size_t n)
{
    const uint8_t *p = buf;
    while (n) {
        if (wait_fd(fd, POLLOUT, IO_TIMEOUT_MS) < 0)
            return -1;
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0) {
            if (errno == EAGAIN || errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* read up to n bytes (at least 1); 0 on EOF, -1 on error/timeout */
static ssize_t read_some(int fd, void *buf, size_t n)
{
    for (;;) {
        if (wait_fd(fd, POLLIN, IO_TIMEOUT_MS) < 0)
            return -1;
        ssize_t r = recv(fd, buf, n, MSG_DONTWAIT);
        if (r < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        return r;
    }
}

/* read one line byte by byte (so nothing past '\n' is consumed) */
static int read_line(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    while (n + 1 < cap) {
        ssize_t r = read_some(fd, buf + n, 1);
        if (r <= 0) {
            if (r == 0)
                errno = ENODATA;
            buf[n] = 0;
            return -1;
        }
        if (buf[n] == '\n') {
            buf[n] = 0;
            return 0;
        }
        n++;
    }
    buf[n] = 0;
    errno = EMSGSIZE;
    return -1;
}

/* send `total` pattern bytes */
static int send_pattern(int fd, uint64_t total, uint32_t seed, double *secs)
{
    static uint8_t buf[65536];
    double t0 = now_s();
    uint64_t off = 0;
    while (off < total) {
        size_t n = total - off < sizeof buf ? (size_t)(total - off) : sizeof buf;
        fill(buf, n, seed, off);
        if (write_all(fd, buf, n) < 0)
            return -1;
        off += n;
    }
    if (secs)
        *secs = now_s() - t0;
    return 0;
}

/* receive exactly `total` pattern bytes and check them; detail gets a reason */
static int recv_pattern(int fd, uint64_t total, uint32_t seed, double *secs,
                        char *detail, size_t dcap)
{
    static uint8_t buf[65536];
    uint64_t off = 0;
    double t0 = 0;
    while (off < total) {
        size_t want = total - off < sizeof buf ? (size_t)(total - off) : sizeof buf;
        ssize_t r = read_some(fd, buf, want);
        if (r <= 0) {
            snprintf(detail, dcap, "%s after %llu of %llu bytes",
                     r == 0 ? "EOF" : strerror(errno),
                     (unsigned long long)off, (unsigned long long)total);
            return -1;
        }
        if (off == 0)
            t0 = now_s();
        long bad = check(buf, (size_t)r, seed, off);
        if (bad >= 0) {
            snprintf(detail, dcap, "content mismatch at byte %llu (got 0x%02x want 0x%02x)",
                     (unsigned long long)(off + (uint64_t)bad), buf[bad],
                     pat(seed, off + (uint64_t)bad));
            return -1;
        }
        off += (uint64_t)r;
    }
    if (secs)
        *secs = now_s() - t0;
    return 0;
}

static int expect_eof(int fd, char *detail, size_t dcap)
{
    char c;
    ssize_t r = read_some(fd, &c, 1);
    if (r == 0)
        return 0;
    snprintf(detail, dcap, "expected EOF, got %s",
             r > 0 ? "data" : strerror(errno));
    return -1;
}

/* One data phase: guest->host (g2h) or host->guest.  Which end sends is
 * fixed by direction, not by who connected. */
static int phase(int fd, int g2h, uint64_t bytes, const char *name,
                 int report, char *detail, size_t dcap)
{
    int sending = g2h ? is_guest : !is_guest;
    uint32_t seed = g2h ? SEED_G2H : SEED_H2G;
    double secs = 0;
    if (sending) {
        if (send_pattern(fd, bytes, seed, &secs) < 0) {
            snprintf(detail, dcap, "%s send failed: %s", g2h ? "g2h" : "h2g", strerror(errno));
            return -1;
        }
        return 0;
    }
    if (recv_pattern(fd, bytes, seed, &secs, detail, dcap) < 0) {
        char tmp[200];
        snprintf(tmp, sizeof tmp, "%s recv: %s", g2h ? "g2h" : "h2g", detail);
        snprintf(detail, dcap, "%s", tmp);
        return -1;
    }
    if (report)
        out("E2E-METRIC %s %s %.2f MiB in %.3f s = %.1f MiB/s (measured by %s)", name,
            g2h ? "guest->host" : "host->guest", bytes / 1048576.0, secs,
            secs > 0 ? bytes / 1048576.0 / secs : 0.0, is_guest ? "guest" : "host");
    return 0;
}

/* Run a scenario body on a connected fd. initiator = we connected. */
static int run_kind(int fd, const char *name, const char *kind, int mib,
                    int initiator, char *detail, size_t dcap)
{
    if (!strcmp(kind, "echo")) {
        char line[256], want[256];
        if (initiator) {
            snprintf(line, sizeof line, "PING %s\n", name);
            if (write_all(fd, line, strlen(line)) < 0) {
                snprintf(detail, dcap, "send PING: %s", strerror(errno));
                return -1;
            }
            if (read_line(fd, line, sizeof line) < 0) {
                snprintf(detail, dcap, "read PONG: %s (partial '%s')", strerror(errno), line);
                return -1;
            }
            snprintf(want, sizeof want, "PONG %s", name);
            if (strcmp(line, want)) {
                snprintf(detail, dcap, "got '%s' want '%s'", line, want);
                return -1;
            }
        } else {
            if (read_line(fd, line, sizeof line) < 0) {
                snprintf(detail, dcap, "read PING: %s (partial '%s')", strerror(errno), line);
                return -1;
            }
            snprintf(want, sizeof want, "PING %s", name);
            if (strcmp(line, want)) {
                snprintf(detail, dcap, "got '%s' want '%s'", line, want);
                return -1;
            }
            snprintf(line, sizeof line, "PONG %s\n", name);
            if (write_all(fd, line, strlen(line)) < 0) {
                snprintf(detail, dcap, "send PONG: %s", strerror(errno));
                return -1;
            }
        }
        if (phase(fd, 1, ECHO_BLOB, name, 0, detail, dcap) < 0)
            return -1;
        if (phase(fd, 0, ECHO_BLOB, name, 0, detail, dcap) < 0)
            return -1;
        snprintf(detail, dcap, "PING/PONG + %d bytes each way ok", ECHO_BLOB);
    } else if (!strcmp(kind, "bulk")) {
        uint64_t bytes = (uint64_t)mib << 20;
        if (phase(fd, 1, bytes, name, 1, detail, dcap) < 0)
            return -1;
        if (phase(fd, 0, bytes, name, 1, detail, dcap) < 0)
            return -1;
        snprintf(detail, dcap, "%d MiB each way content ok", mib);
    } else {
        snprintf(detail, dcap, "unknown kind %s", kind);
        return -1;
    }
    if (!initiator) {
        char keep[256];
        snprintf(keep, sizeof keep, "%s", detail);
        if (expect_eof(fd, detail, dcap) < 0)
            return -1;
        snprintf(detail, dcap, "%s, EOF seen", keep);
    }
    return 0;
}

static int result(const char *name, int rc, const char *detail, double t0)
{
    out("E2E-RESULT %s %s %s (%.0f ms)", name, rc == 0 ? "PASS" : "FAIL", detail,
        (now_s() - t0) * 1000);
    return rc == 0 ? 0 : 1;
}

static int accept_one(int lfd, char *detail, size_t dcap)
{
    if (wait_fd(lfd, POLLIN, ACCEPT_TIMEOUT_MS) < 0) {
        snprintf(detail, dcap, "accept wait: %s", strerror(errno));
        return -1;
    }
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0)
        snprintf(detail, dcap, "accept: %s", strerror(errno));
    return fd;
}

/* ---- guest (AF_VSOCK) ---- */

static int vsock_connect(unsigned port, int *err, double *ms)
{
    int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        *err = errno;
        return -1;
    }
    struct sockaddr_vm sa = { .svm_family = AF_VSOCK, .svm_cid = 2, .svm_port = port };
    double t0 = now_s();
    int r = connect(fd, (struct sockaddr *)&sa, sizeof sa);
    *ms = (now_s() - t0) * 1000;
    if (r < 0) {
        *err = errno;
        close(fd);
        return -1;
    }
    return fd;
}

static int guest_main(int argc, char **argv)
{
    is_guest = 1;
    const char *mode = argv[1], *name = argv[2];
    unsigned port = (unsigned)strtoul(argv[3], NULL, 10);
    char detail[400] = "";
    double t0 = now_s();

    if (!strcmp(mode, "refused")) {
        int maxms = argc > 4 ? atoi(argv[4]) : 1000;
        int err = 0;
        double ms;
        int fd = vsock_connect(port, &err, &ms);
        if (fd >= 0) {
            close(fd);
            snprintf(detail, sizeof detail, "connect to port %u succeeded, expected failure", port);
            return result(name, -1, detail, t0);
        }
        int ok = (err == ECONNRESET || err == ECONNREFUSED) && ms <= maxms;
        snprintf(detail, sizeof detail, "connect failed with %s after %.1f ms (limit %d ms)",
                 strerrorname_np(err) ? strerrorname_np(err) : strerror(err), ms, maxms);
        return result(name, ok ? 0 : -1, detail, t0);
    }

    const char *kind = argc > 4 ? argv[4] : "echo";
    int mib = argc > 5 ? atoi(argv[5]) : 0;
    int fd, rc;
    if (!strcmp(mode, "listen")) {
        int lfd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_vm sa = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY,
                                  .svm_port = port };
        if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(lfd, 64) < 0) {
            snprintf(detail, sizeof detail, "vsock listen on %u: %s", port, strerror(errno));
            return result(name, -1, detail, t0);
        }
        out("E2E-READY %s", name);
        fd = accept_one(lfd, detail, sizeof detail);
        close(lfd);
        if (fd < 0)
            return result(name, -1, detail, t0);
        rc = run_kind(fd, name, kind, mib, 0, detail, sizeof detail);
    } else if (!strcmp(mode, "connect")) {
        int err = 0;
        double ms;
        fd = vsock_connect(port, &err, &ms);
        if (fd < 0) {
            snprintf(detail, sizeof detail, "vsock connect to 2:%u: %s after %.1f ms", port,
                     strerror(err), ms);
            return result(name, -1, detail, t0);
        }
        rc = run_kind(fd, name, kind, mib, 1, detail, sizeof detail);
    } else {
        snprintf(detail, sizeof detail, "unknown mode %s", mode);
        return result(name, -1, detail, t0);
    }
    close(fd);
    return result(name, rc, detail, t0);
}

/* ---- host (Unix sockets) ---- */

static int unix_connect(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

static int host_main(int argc, char **argv)
{
    is_guest = 0;
    const char *mode = argv[1], *name = argv[2], *path = argv[3];
    char detail[400] = "";
    double t0 = now_s();
    int fd, rc;

    if (!strcmp(mode, "host-connect") || !strcmp(mode, "host-refused")) {
        char line[128];
        if (argc < 5) {
            out("usage: %s %s NAME UDS PORT ...", argv[0], mode);
            return 2;
        }
        unsigned port = (unsigned)strtoul(argv[4], NULL, 10);
        fd = unix_connect(path);
        if (fd < 0) {
            snprintf(detail, sizeof detail, "connect %s: %s", path, strerror(errno));
            return result(name, -1, detail, t0);
        }
        snprintf(line, sizeof line, "CONNECT %u\n", port);
        if (write_all(fd, line, strlen(line)) < 0) {
            snprintf(detail, sizeof detail, "send CONNECT: %s", strerror(errno));
            return result(name, -1, detail, t0);
        }
        int lr = read_line(fd, line, sizeof line);
        double ms = (now_s() - t0) * 1000;
        if (!strcmp(mode, "host-refused")) {
            int maxms = argc > 5 ? atoi(argv[5]) : 3000;
            int ok = lr < 0 && errno == ENODATA && line[0] == 0 && ms <= maxms;
            snprintf(detail, sizeof detail, "%s after %.1f ms (limit %d ms)%s%s",
                     lr == 0 ? "got a line" : errno == ENODATA ? "closed" : strerror(errno),
                     ms, maxms, line[0] ? ", data: " : ", no data", line);
            close(fd);
            return result(name, ok ? 0 : -1, detail, t0);
        }
        if (lr < 0) {
            snprintf(detail, sizeof detail, "no OK line: %s after %.1f ms (partial '%s')",
                     errno == ENODATA ? "EOF" : strerror(errno), ms, line);
            return result(name, -1, detail, t0);
        }
        unsigned long hp = 0;
        if (sscanf(line, "OK %lu", &hp) != 1 || hp < (1ul << 30) || hp >= (1ul << 31)) {
            snprintf(detail, sizeof detail, "bad reply '%s'", line);
            return result(name, -1, detail, t0);
        }
        out("E2E-INFO %s CONNECT %u -> '%s' after %.1f ms", name, port, line, ms);
        const char *kind = argc > 5 ? argv[5] : "echo";
        int mib = argc > 6 ? atoi(argv[6]) : 0;
        rc = run_kind(fd, name, kind, mib, 1, detail, sizeof detail);
    } else if (!strcmp(mode, "host-listen")) {
        const char *kind = argc > 4 ? argv[4] : "echo";
        int mib = argc > 5 ? atoi(argv[5]) : 0;
        int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
        unlink(path);
        if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(lfd, 64) < 0) {
            snprintf(detail, sizeof detail, "listen %s: %s", path, strerror(errno));
            return result(name, -1, detail, t0);
        }
        out("E2E-READY %s", name);
        fd = accept_one(lfd, detail, sizeof detail);
        close(lfd);
        unlink(path);
        if (fd < 0)
            return result(name, -1, detail, t0);
        t0 = now_s();
        rc = run_kind(fd, name, kind, mib, 0, detail, sizeof detail);
    } else {
        snprintf(detail, sizeof detail, "unknown mode %s", mode);
        return result(name, -1, detail, t0);
    }
    close(fd);
    return result(name, rc, detail, t0);
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr,
                "usage: %s listen|connect NAME PORT [echo|bulk MIB]\n"
                "       %s refused NAME PORT MAXMS\n"
                "       %s host-connect NAME UDS PORT [echo|bulk MIB]\n"
                "       %s host-listen NAME PATH [echo|bulk MIB]\n"
                "       %s host-refused NAME UDS PORT MAXMS\n",
                argv[0], argv[0], argv[0], argv[0], argv[0]);
        return 2;
    }
    if (!strncmp(argv[1], "host-", 5))
        return host_main(argc, argv);
    return guest_main(argc, argv);
}
