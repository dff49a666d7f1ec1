/* SPDX-License-Identifier: MIT */
/*
 * guest_agent.c - the e2e test peer, built static (gcc -static).
 *
 * Owns: both ends of the real-guest scenarios.  Inside the guest (started by
 * the initramfs /init) it speaks AF_VSOCK; on the host (run by run_e2e.sh)
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
 *   seqpacket NAME PORT MAXMS       SOCK_SEQPACKET without the feature:
 *                                   socket() ok, connect ESOCKTNOSUPPORT
 *   connect-multi NAME PORT N       N concurrent "multi" connections
 *   duplex-multi NAME LPORT N G2HNAME CPORT
 *                                   accept N on LPORT and, once the first is
 *                                   in, open N to CPORT; a barrier holds all
 *                                   2N until every one is connected
 *                                   (result line "multi-barrier")
 * Host modes (Unix sockets, vsockmuxd hybrid protocol):
 *   host-connect NAME UDS PORT KIND [MIB]   "CONNECT PORT\n", expect "OK n\n"
 *   host-listen NAME PATH KIND [MIB]        listen on PATH (<uds>_PORT), made
 *                                           0666 (the daemon drops to nobody)
 *   host-refused NAME UDS PORT MAXMS        CONNECT to a port nobody listens
 *                                           on: socket closed, no "OK"
 *   host-connect-multi NAME UDS PORT N      N concurrent CONNECTs ("multi")
 *   host-listen-multi NAME PATH N           accept N ("multi")
 * KIND:
 *   echo   initiator "PING <name>\n" -> acceptor "PONG <name>\n", then a
 *          69,999-byte pattern guest->host then host->guest, then the
 *          initiator closes and the acceptor must see EOF.
 *   bulk   MIB MiB guest->host, then MIB MiB host->guest, content-checked,
 *          MiB/s reported by the receiving side of each phase.
 *   chat   (demo.sh) one human-readable line each way: the initiator says
 *          hello, the acceptor answers quoting what it read; each side
 *          prints "E2E-CHAT <name> <side> sent|received: <line>".
 *   echo and bulk both end with the initiator closing and the acceptor
 *   checking for EOF.
 *   half   initiator sends 69,999 bytes and shutdown(SHUT_WR)s; acceptor
 *          must see them then EOF, replies 69,999 bytes and SHUT_WRs; the
 *          initiator must get the whole reply after its own SHUT_WR, then EOF.
 *   multi  one of N: "PING name#i" / "PONG name#i", then 64 KiB + 77*i bytes
 *          each way with seeds tweaked by i (set per child process).
 *   hold   guest: PING/PONG, print E2E-READY, stay connected (the harness
 *          SIGKILLs QEMU); host: the connection must then end (EOF/reset).
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
#include <sys/utsname.h>
#include <sys/wait.h>
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
static uint32_t seed_xor;       /* per-connection seed tweak (multi) */
static int bar_ready = -1;      /* duplex-multi barrier: write 1 byte when connected */
static int bar_go = -1;         /* ... then wait until this pipe reaches EOF */

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

/* write "WORD NAME\n" */
static int send_word_line(int fd, const char *word, const char *name, char *detail,
                          size_t dcap)
{
    char line[256];
    snprintf(line, sizeof line, "%s %s\n", word, name);
    if (write_all(fd, line, strlen(line)) < 0) {
        snprintf(detail, dcap, "send %s: %s", word, strerror(errno));
        return -1;
    }
    return 0;
}

/* read one line; it must be "WORD NAME" */
static int expect_word_line(int fd, const char *word, const char *name, char *detail,
                            size_t dcap)
{
    char line[256], want[256];
    if (read_line(fd, line, sizeof line) < 0) {
        snprintf(detail, dcap, "read %s: %s (partial '%s')", word, strerror(errno), line);
        return -1;
    }
    snprintf(want, sizeof want, "%s %s", word, name);
    if (strcmp(line, want)) {
        snprintf(detail, dcap, "got '%.120s' want '%.120s'", line, want);
        return -1;
    }
    return 0;
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
    uint32_t seed = (g2h ? SEED_G2H : SEED_H2G) ^ seed_xor;
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
        if (initiator) {
            if (send_word_line(fd, "PING", name, detail, dcap) < 0 ||
                expect_word_line(fd, "PONG", name, detail, dcap) < 0)
                return -1;
        } else {
            if (expect_word_line(fd, "PING", name, detail, dcap) < 0 ||
                send_word_line(fd, "PONG", name, detail, dcap) < 0)
                return -1;
        }
        if (phase(fd, 1, ECHO_BLOB, name, 0, detail, dcap) < 0)
            return -1;
        if (phase(fd, 0, ECHO_BLOB, name, 0, detail, dcap) < 0)
            return -1;
        snprintf(detail, dcap, "PING/PONG + %d bytes each way ok", ECHO_BLOB);
    } else if (!strcmp(kind, "multi")) {
        /* one of N concurrent connections; index carried in the PING line */
        char line[256];
        unsigned idx = 0;
        if (initiator) {
            idx = seed_xor;
            snprintf(line, sizeof line, "PING %s#%u\n", name, idx);
            if (write_all(fd, line, strlen(line)) < 0 || read_line(fd, line, sizeof line) < 0) {
                snprintf(detail, dcap, "PING/PONG: %s", strerror(errno));
                return -1;
            }
            char want[256];
            snprintf(want, sizeof want, "PONG %s#%u", name, idx);
            if (strcmp(line, want)) {
                snprintf(detail, dcap, "got '%s' want '%s'", line, want);
                return -1;
            }
        } else {
            char pre[256];
            snprintf(pre, sizeof pre, "PING %s#", name);
            if (read_line(fd, line, sizeof line) < 0 || strncmp(line, pre, strlen(pre))) {
                snprintf(detail, dcap, "bad PING '%s' (%s)", line, strerror(errno));
                return -1;
            }
            idx = (unsigned)strtoul(line + strlen(pre), NULL, 10);
            seed_xor = idx;
            snprintf(line, sizeof line, "PONG %s#%u\n", name, idx);
            if (write_all(fd, line, strlen(line)) < 0) {
                snprintf(detail, dcap, "send PONG: %s", strerror(errno));
                return -1;
            }
        }
        if (bar_ready >= 0) {
            /* every connection of both directions is up before any data moves */
            char c = 1;
            struct pollfd p = { .fd = bar_go, .events = POLLIN };
            if (write(bar_ready, &c, 1) != 1 || poll(&p, 1, 60000) <= 0) {
                snprintf(detail, dcap, "#%u: barrier not released within 60 s", idx);
                return -1;
            }
        }
        size_t blob = 65536 + 77 * idx;
        if (phase(fd, 1, blob, name, 0, detail, dcap) < 0)
            return -1;
        if (phase(fd, 0, blob, name, 0, detail, dcap) < 0)
            return -1;
        snprintf(detail, dcap, "#%u: %zu bytes each way ok", idx, blob);
    } else if (!strcmp(kind, "half")) {
        /* initiator sends, shuts down its sending side, then must still get
         * the acceptor's whole reply and then EOF */
        int first_g2h = initiator ? is_guest : !is_guest;
        if (phase(fd, first_g2h, ECHO_BLOB, name, 0, detail, dcap) < 0)
            return -1;
        if (initiator) {
            if (shutdown(fd, SHUT_WR) < 0) {
                snprintf(detail, dcap, "shutdown(SHUT_WR): %s", strerror(errno));
                return -1;
            }
        } else if (expect_eof(fd, detail, dcap) < 0) {
            char tmp[200];
            snprintf(tmp, sizeof tmp, "after peer's SHUT_WR: %s", detail);
            snprintf(detail, dcap, "%s", tmp);
            return -1;
        }
        if (phase(fd, !first_g2h, ECHO_BLOB, name, 0, detail, dcap) < 0)
            return -1;
        if (!initiator) {
            if (shutdown(fd, SHUT_WR) < 0) {
                snprintf(detail, dcap, "shutdown(SHUT_WR) reply side: %s", strerror(errno));
                return -1;
            }
            snprintf(detail, dcap, "EOF seen, then %d-byte reply sent after peer's SHUT_WR",
                     ECHO_BLOB);
        } else {
            if (expect_eof(fd, detail, dcap) < 0)
                return -1;
            snprintf(detail, dcap, "SHUT_WR after %d bytes, %d-byte reply + EOF received",
                     ECHO_BLOB, ECHO_BLOB);
        }
        return 0;
    } else if (!strcmp(kind, "chat")) {
        /* demo.sh: one readable line each way, printed by both ends */
        const char *me = is_guest ? "guest" : "host";
        char line[256], got[256];
        struct utsname u;
        if (uname(&u) < 0)
            snprintf(u.release, sizeof u.release, "?");
        if (initiator) {
            snprintf(line, sizeof line, "hello from the %s program (pid %d, Linux %s)",
                     me, (int)getpid(), u.release);
            out("E2E-CHAT %s %s sent: %s", name, me, line);
            strcat(line, "\n");
            if (write_all(fd, line, strlen(line)) < 0 || read_line(fd, got, sizeof got) < 0) {
                snprintf(detail, dcap, "chat: %s", strerror(errno));
                return -1;
            }
            out("E2E-CHAT %s %s received: %s", name, me, got);
        } else {
            if (read_line(fd, got, sizeof got) < 0) {
                snprintf(detail, dcap, "chat read: %s", strerror(errno));
                return -1;
            }
            out("E2E-CHAT %s %s received: %s", name, me, got);
            snprintf(line, sizeof line, "the %s program (pid %d, Linux %s) read your %zu-byte line",
                     me, (int)getpid(), u.release, strlen(got) + 1);
            out("E2E-CHAT %s %s sent: %s", name, me, line);
            strcat(line, "\n");
            if (write_all(fd, line, strlen(line)) < 0) {
                snprintf(detail, dcap, "chat reply: %s", strerror(errno));
                return -1;
            }
        }
        snprintf(detail, dcap, "one line each way");
    } else if (!strcmp(kind, "hold")) {
        /* initiator (guest): PING/PONG then stay connected until killed.
         * acceptor (host): PONG, then the connection must end (EOF/reset)
         * once the guest's VMM is SIGKILLed. */
        char line[256];
        if (initiator) {
            snprintf(line, sizeof line, "PING %s\n", name);
            if (write_all(fd, line, strlen(line)) < 0 || read_line(fd, line, sizeof line) < 0) {
                snprintf(detail, dcap, "PING/PONG: %s", strerror(errno));
                return -1;
            }
            out("E2E-READY %s", name);
            struct pollfd p = { .fd = fd, .events = POLLIN };
            poll(&p, 1, ACCEPT_TIMEOUT_MS);
            snprintf(detail, dcap, "still alive: VMM was not killed");
            return -1;
        }
        if (read_line(fd, line, sizeof line) < 0) {
            snprintf(detail, dcap, "read PING: %s", strerror(errno));
            return -1;
        }
        snprintf(line, sizeof line, "PONG %s\n", name);
        if (write_all(fd, line, strlen(line)) < 0) {
            snprintf(detail, dcap, "send PONG: %s", strerror(errno));
            return -1;
        }
        out("E2E-READY %s", name);
        double t = now_s();
        char c;
        ssize_t r = read_some(fd, &c, 1);
        if (r > 0 || (r < 0 && errno != ECONNRESET)) {
            snprintf(detail, dcap, "expected EOF/reset after VMM kill, got %s",
                     r > 0 ? "data" : strerror(errno));
            return -1;
        }
        snprintf(detail, dcap, "host side ended with %s %.0f ms after PONG",
                 r == 0 ? "EOF" : "ECONNRESET", (now_s() - t) * 1000);
        return 0;
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

/* Run kind on an open connection, close it, report. */
static int run_and_report(int fd, const char *name, const char *kind, int mib,
                          int initiator, double t0)
{
    char detail[400] = "";
    int rc = run_kind(fd, name, kind, mib, initiator, detail, sizeof detail);
    close(fd);
    return result(name, rc, detail, t0);
}

static int unknown_mode(const char *name, const char *mode, double t0)
{
    char detail[200];
    snprintf(detail, sizeof detail, "unknown mode %s", mode);
    return result(name, -1, detail, t0);
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

/* ---- N concurrent connections ----
 * dial(i, detail) returns a connected fd for initiator child i; for the
 * acceptor side the parent accepts N connections first.  Each connection
 * runs in its own child; the parent prints the one result line. */
typedef int (*dial_fn)(unsigned i, const char *arg, unsigned port, char *detail, size_t dcap);

static int child_run(int fd, const char *name, int initiator)
{
    char detail[400] = "";
    int rc = run_kind(fd, name, "multi", 0, initiator, detail, sizeof detail);
    if (rc < 0)
        out("E2E-INFO %s#%u FAIL %s", name, seed_xor, detail);
    close(fd);
    _exit(rc < 0 ? 1 : 0);
}

#define MAXCONN 256

static int reap(const char *name, const pid_t *pids, int nchild, int nfail0, double t0,
                const char *what)
{
    int fails = nfail0;
    for (int k = 0; k < nchild; k++) {
        int st;
        if (waitpid(pids[k], &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
            fails++;
    }
    char detail[200];
    snprintf(detail, sizeof detail, "%d/%d %s connections content ok", nchild + nfail0 - fails,
             nchild + nfail0, what);
    return result(name, fails ? -1 : 0, detail, t0);
}

static int multi_initiate(const char *name, unsigned n, dial_fn dial, const char *arg,
                          unsigned port, const char *what)
{
    double t0 = now_s();
    pid_t pids[MAXCONN];
    int started = 0, failed = 0;
    if (n > MAXCONN)
        n = MAXCONN;
    for (unsigned i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            char detail[400] = "";
            seed_xor = i;
            int fd = dial(i, arg, port, detail, sizeof detail);
            if (fd < 0) {
                out("E2E-INFO %s#%u FAIL %s", name, i, detail);
                _exit(1);
            }
            child_run(fd, name, 1);
        }
        if (pid < 0)
            failed++;
        else
            pids[started++] = pid;
    }
    return reap(name, pids, started, failed, t0, what);
}

/* after_first: called once the first connection is accepted (so both
 * directions provably overlap); returns a pid to reap separately or -1 */
static int multi_accept(const char *name, int lfd, unsigned n, const char *what,
                        pid_t (*after_first)(void), pid_t *extra)
{
    double t0 = 0;
    pid_t pids[MAXCONN];
    int started = 0, failed = 0;
    if (n > MAXCONN)
        n = MAXCONN;
    for (unsigned i = 0; i < n; i++) {
        char detail[400] = "";
        int fd = accept_one(lfd, detail, sizeof detail);
        if (i == 0) {
            t0 = now_s();
            if (after_first)
                *extra = after_first();
        }
        if (fd < 0) {
            out("E2E-INFO %s accept %u/%u FAIL %s", name, i + 1, n, detail);
            failed += (int)(n - i);
            break;
        }
        pid_t pid = fork();
        if (pid == 0) {
            close(lfd);
            child_run(fd, name, 0);
        }
        close(fd);
        if (pid < 0)
            failed++;
        else
            pids[started++] = pid;
    }
    close(lfd);
    return reap(name, pids, started, failed, t0 ? t0 : now_s(), what);
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

static int guest_dial(unsigned i, const char *arg, unsigned port, char *detail, size_t dcap)
{
    (void)i; (void)arg;
    int err = 0;
    double ms;
    int fd = vsock_connect(port, &err, &ms);
    if (fd < 0)
        snprintf(detail, dcap, "vsock connect to 2:%u: %s after %.1f ms", port, strerror(err), ms);
    return fd;
}

static const char *ename(int e)
{
    const char *n = strerrorname_np(e);
    return n ? n : strerror(e);
}

/* SOCK_SEQPACKET without VIRTIO_VSOCK_F_SEQPACKET negotiated: Linux 6.1
 * creates the socket (the transport is picked at connect time) and connect()
 * fails with ESOCKTNOSUPPORT because virtio's seqpacket_allow() is false. */
static int guest_seqpacket(const char *name, unsigned port, int maxms)
{
    char detail[400];
    double t0 = now_s();
    int fd = socket(AF_VSOCK, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(detail, sizeof detail, "socket(AF_VSOCK, SOCK_SEQPACKET) failed: %s (expected to succeed on 6.1)",
                 ename(errno));
        return result(name, -1, detail, t0);
    }
    struct sockaddr_vm sa = { .svm_family = AF_VSOCK, .svm_cid = 2, .svm_port = port };
    double c0 = now_s();
    int r = connect(fd, (struct sockaddr *)&sa, sizeof sa);
    int err = errno;
    double ms = (now_s() - c0) * 1000;
    close(fd);
    if (r == 0) {
        snprintf(detail, sizeof detail, "seqpacket connect to 2:%u succeeded: seqpacket was negotiated", port);
        return result(name, -1, detail, t0);
    }
    int ok = err == ESOCKTNOSUPPORT && ms <= maxms;
    snprintf(detail, sizeof detail, "socket ok, connect failed with %s after %.1f ms (want ESOCKTNOSUPPORT < %d ms)",
             ename(err), ms, maxms);
    return result(name, ok ? 0 : -1, detail, t0);
}

static unsigned dup_n, dup_port;
static const char *dup_name;

static pid_t start_g2h(void)
{
    pid_t pid = fork();
    if (pid == 0)
        _exit(multi_initiate(dup_name, dup_n, guest_dial, NULL, dup_port, "guest->host"));
    return pid;
}

/* barrier coordinator for duplex-multi: releases everyone (closes the go
 * pipe) once `total` connections reported in, or after 60 s */
static pid_t start_barrier(const char *name, unsigned total)
{
    int r[2], g[2];
    if (pipe(r) < 0 || pipe(g) < 0)
        return -1;
    double t0 = now_s();
    pid_t pid = fork();
    if (pid == 0) {
        close(r[1]);
        close(g[0]);
        unsigned got = 0;
        char buf[256];
        while (got < total) {
            int left = 60000 - (int)((now_s() - t0) * 1000);
            struct pollfd p = { .fd = r[0], .events = POLLIN };
            if (left <= 0 || poll(&p, 1, left) <= 0)
                break;
            ssize_t n = read(r[0], buf, sizeof buf);
            if (n <= 0)
                break;
            got += (unsigned)n;
        }
        char detail[200];
        snprintf(detail, sizeof detail,
                 "%u/%u connections (both directions) established and open at once", got, total);
        close(g[1]);
        _exit(result(name, got == total ? 0 : -1, detail, t0));
    }
    close(r[0]);
    close(g[1]);
    bar_ready = r[1];
    bar_go = g[0];
    return pid;
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

    if (!strcmp(mode, "seqpacket"))
        return guest_seqpacket(name, port, argc > 4 ? atoi(argv[4]) : 500);
    if (!strcmp(mode, "connect-multi"))
        return multi_initiate(name, argc > 4 ? (unsigned)atoi(argv[4]) : 32, guest_dial, NULL,
                              port, "guest->host");
    if (!strcmp(mode, "duplex-multi")) {
        /* duplex-multi NAME LPORT N G2HNAME CPORT: accept N host->guest
         * connections on LPORT; once the first is in, also open N
         * guest->host connections to CPORT; all run at once */
        if (argc < 7) {
            snprintf(detail, sizeof detail, "usage: duplex-multi NAME LPORT N G2HNAME CPORT");
            return result(name, -1, detail, t0);
        }
        dup_n = (unsigned)atoi(argv[4]);
        dup_name = argv[5];
        dup_port = (unsigned)strtoul(argv[6], NULL, 10);
        int lfd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_vm sa = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY,
                                  .svm_port = port };
        if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(lfd, 128) < 0) {
            snprintf(detail, sizeof detail, "vsock listen on %u: %s", port, strerror(errno));
            return result(name, -1, detail, t0);
        }
        pid_t bar = start_barrier("multi-barrier", 2 * dup_n);
        out("E2E-READY %s", name);
        pid_t extra = -1;
        int rc1 = multi_accept(name, lfd, dup_n, "host->guest", start_g2h, &extra);
        int rc2 = 1, rc3 = 1, st;
        if (extra > 0 && waitpid(extra, &st, 0) == extra && WIFEXITED(st))
            rc2 = WEXITSTATUS(st);
        if (bar > 0 && waitpid(bar, &st, 0) == bar && WIFEXITED(st))
            rc3 = WEXITSTATUS(st);
        return rc1 || rc2 || rc3;
    }

    const char *kind = argc > 4 ? argv[4] : "echo";
    int mib = argc > 5 ? atoi(argv[5]) : 0;
    int fd;
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
        return run_and_report(fd, name, kind, mib, 0, t0);
    } else if (!strcmp(mode, "connect")) {
        int err = 0;
        double ms;
        fd = vsock_connect(port, &err, &ms);
        if (fd < 0) {
            snprintf(detail, sizeof detail, "vsock connect to 2:%u: %s after %.1f ms", port,
                     strerror(err), ms);
            return result(name, -1, detail, t0);
        }
        return run_and_report(fd, name, kind, mib, 1, t0);
    }
    return unknown_mode(name, mode, t0);
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

/* hybrid-vsock CONNECT; returns the fd after a valid "OK n" line */
static int host_dial(unsigned i, const char *path, unsigned port, char *detail, size_t dcap)
{
    (void)i;
    char line[128];
    double t0 = now_s();
    int fd = unix_connect(path);
    if (fd < 0) {
        snprintf(detail, dcap, "connect %s: %s", path, strerror(errno));
        return -1;
    }
    snprintf(line, sizeof line, "CONNECT %u\n", port);
    if (write_all(fd, line, strlen(line)) < 0) {
        snprintf(detail, dcap, "send CONNECT: %s", strerror(errno));
        close(fd);
        return -1;
    }
    unsigned long hp = 0;
    if (read_line(fd, line, sizeof line) < 0 || sscanf(line, "OK %lu", &hp) != 1 ||
        hp < (1ul << 30) || hp >= (1ul << 31)) {
        snprintf(detail, dcap, "no valid OK line: %s after %.1f ms (got '%s')",
                 errno == ENODATA ? "EOF" : strerror(errno), (now_s() - t0) * 1000, line);
        close(fd);
        return -1;
    }
    return fd;
}

static int host_listen_sock(const char *path, int backlog, char *detail, size_t dcap)
{
    int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    unlink(path);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(lfd, backlog) < 0 ||
        chmod(path, 0666) < 0) {   /* the daemon runs as an unprivileged user */
        snprintf(detail, dcap, "listen %s: %s", path, strerror(errno));
        if (lfd >= 0)
            close(lfd);
        return -1;
    }
    return lfd;
}

static int host_main(int argc, char **argv)
{
    is_guest = 0;
    const char *mode = argv[1], *name = argv[2], *path = argv[3];
    char detail[400] = "";
    double t0 = now_s();
    int fd;

    if (!strcmp(mode, "host-connect-multi")) {
        if (argc < 5)
            return 2;
        return multi_initiate(name, argc > 5 ? (unsigned)atoi(argv[5]) : 32, host_dial, path,
                              (unsigned)strtoul(argv[4], NULL, 10), "host->guest");
    }
    if (!strcmp(mode, "host-listen-multi")) {
        int lfd = host_listen_sock(path, 128, detail, sizeof detail);
        if (lfd < 0)
            return result(name, -1, detail, t0);
        out("E2E-READY %s", name);
        int rc2 = multi_accept(name, lfd, argc > 4 ? (unsigned)atoi(argv[4]) : 32, "guest->host",
                               NULL, NULL);
        unlink(path);
        return rc2;
    }
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
        return run_and_report(fd, name, kind, mib, 1, t0);
    } else if (!strcmp(mode, "host-listen")) {
        const char *kind = argc > 4 ? argv[4] : "echo";
        int mib = argc > 5 ? atoi(argv[5]) : 0;
        int lfd = host_listen_sock(path, 64, detail, sizeof detail);
        if (lfd < 0)
            return result(name, -1, detail, t0);
        out("E2E-READY %s", name);
        fd = accept_one(lfd, detail, sizeof detail);
        close(lfd);
        unlink(path);
        if (fd < 0)
            return result(name, -1, detail, t0);
        return run_and_report(fd, name, kind, mib, 0, now_s());
    }
    return unknown_mode(name, mode, t0);
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr,
                "usage: %s listen|connect NAME PORT [echo|bulk MIB|half|hold]\n"
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
