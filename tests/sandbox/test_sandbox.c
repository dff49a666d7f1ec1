/*
 * test_sandbox.c - the real compiled seccomp filters, table-driven (in the
 * spirit of Firecracker's seccomp validation): for each role, every
 * allowed syscall with allowed arguments succeeds; every forbidden
 * syscall, and every allowed syscall with a forbidden argument, kills the
 * process with SIGSYS; abort() still ends in SIGABRT; --sandbox-debug
 * logs the syscall's name and exits 159; the filter covers every thread.
 *
 * Owns: the expectations (written by hand from the security model, not derived from
 * the policy tables they check).
 * Never: loads a filter in the cmocka runner itself. Every filter is
 * loaded in a forked child that ends with _exit() or a signal, and the
 * parent judges its wait status.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include <setjmp.h>
#include <cmocka.h>

#include "sandbox.h"

/* Child exit codes besides 0 (the probe did what was expected). */
#define CHILD_PROBE_FAILED 1
#define CHILD_SETUP_FAILED 120
#define CHILD_APPLY_FAILED 121
#define CHILD_TIMEOUT_SECONDS 10

/* The muxer's syscall budget. */
#define MUXER_MAX_SYSCALLS 35

/* fds and resources a child sets up before its filter is loaded. */
struct fixture {
	int pipe_fds[2];
	int event_fd;
	int stream_pair[2];
	int seqpacket_pair[2];
	int timer_fd;
	int epoll_fd;
	int memory_fd;
	int listen_fd;                 /* abstract AF_UNIX stream listener */
	struct sockaddr_un listen_address;
	socklen_t listen_address_length;
	char unlink_path[64];          /* a file the broker may remove */
	pid_t peer_pid;                /* broker: a stand-in muxer */
};

typedef int (*probe_fn)(struct fixture *fixture);

enum expectation {
	EXPECT_SUCCESS,  /* the probe returns 0: the call worked */
	EXPECT_SIGSYS,   /* the filter kills the child */
	EXPECT_REFUSED,  /* the probe returns 0: the call failed with EACCES */
};

struct probe_case {
	const char *name;
	enum sandbox_role role;
	enum expectation expect;
	probe_fn probe;
};

/* A probe reports why an allowed call failed, then returns non-zero. */
static int probe_failed(const char *what)
{
	char line[160];
	int length = snprintf(line, sizeof(line), "probe: %s: %s\n", what,
			      strerror(errno));

	if (length > 0 && write(STDERR_FILENO, line, (size_t)length) < 0)
		return CHILD_PROBE_FAILED;
	return CHILD_PROBE_FAILED;
}

#define CHECK_CALL(expression) \
	do { \
		if ((expression) < 0) \
			return probe_failed(#expression); \
	} while (0)

/* ---------------------------------------------------------------- */
/* Allowed calls, with the arguments the daemon uses                 */

static int probe_epoll(struct fixture *f)
{
	struct epoll_event event = { .events = EPOLLIN };
	struct epoll_event ready[4];

	CHECK_CALL(epoll_ctl(f->epoll_fd, EPOLL_CTL_ADD, f->pipe_fds[0], &event));
	event.events = EPOLLIN | EPOLLOUT;
	CHECK_CALL(epoll_ctl(f->epoll_fd, EPOLL_CTL_MOD, f->pipe_fds[0], &event));
	CHECK_CALL(epoll_wait(f->epoll_fd, ready, 4, 0));
	CHECK_CALL(epoll_ctl(f->epoll_fd, EPOLL_CTL_DEL, f->pipe_fds[0], NULL));
	return 0;
}

static int probe_timerfd_settime(struct fixture *f)
{
	struct itimerspec spec = { .it_value = { .tv_sec = 1000000 } };

	CHECK_CALL(timerfd_settime(f->timer_fd, TFD_TIMER_ABSTIME, &spec, NULL));
	CHECK_CALL(timerfd_settime(f->timer_fd, 0, &spec, NULL));
	return 0;
}

static int probe_read_write(struct fixture *f)
{
	uint64_t count = 1;
	char byte = 'x';

	CHECK_CALL(write(f->pipe_fds[1], &byte, 1));
	CHECK_CALL(read(f->pipe_fds[0], &byte, 1));
	CHECK_CALL(write(f->event_fd, &count, sizeof(count)));
	CHECK_CALL(read(f->event_fd, &count, sizeof(count)));
	return 0;
}

static int probe_readv_writev(struct fixture *f)
{
	char head[2] = "ab", tail[3] = "cde", back[5];
	struct iovec out[2] = { { head, sizeof(head) }, { tail, sizeof(tail) } };
	struct iovec in = { back, sizeof(back) };

	CHECK_CALL(writev(f->stream_pair[0], out, 2));
	CHECK_CALL(readv(f->stream_pair[1], &in, 1));
	return 0;
}

static int probe_send_recv(struct fixture *f)
{
	char line[16];

	CHECK_CALL(send(f->stream_pair[0], "CONNECT 5\n", 10, MSG_NOSIGNAL | MSG_DONTWAIT));
	CHECK_CALL(recv(f->stream_pair[1], line, sizeof(line), MSG_PEEK | MSG_DONTWAIT));
	CHECK_CALL(recv(f->stream_pair[1], line, sizeof(line), MSG_DONTWAIT));
	return 0;
}

/* sendmsg with an fd attached, recvmsg taking it, like the IPC channel. */
static int probe_sendmsg_recvmsg(struct fixture *f)
{
	union {
		char bytes[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} control;
	char payload = 'p';
	struct iovec iov = { &payload, 1 };
	struct msghdr message = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = control.bytes, .msg_controllen = sizeof(control.bytes),
	};
	struct cmsghdr *cmsg = CMSG_FIRSTHDR(&message);
	int received_fd;

	memset(&control, 0, sizeof(control));
	cmsg->cmsg_level = SOL_SOCKET;
	cmsg->cmsg_type = SCM_RIGHTS;
	cmsg->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cmsg), &f->event_fd, sizeof(int));
	CHECK_CALL(sendmsg(f->seqpacket_pair[0], &message, MSG_DONTWAIT | MSG_NOSIGNAL));
	memset(&control, 0, sizeof(control));
	message.msg_controllen = sizeof(control.bytes);
	CHECK_CALL(recvmsg(f->seqpacket_pair[1], &message, MSG_DONTWAIT | MSG_CMSG_CLOEXEC));
	cmsg = CMSG_FIRSTHDR(&message);
	if (!cmsg || cmsg->cmsg_type != SCM_RIGHTS) {
		errno = EPROTO;
		return probe_failed("recvmsg: no fd received");
	}
	memcpy(&received_fd, CMSG_DATA(cmsg), sizeof(int));
	CHECK_CALL(close(received_fd));
	return 0;
}

static int probe_shutdown_write(struct fixture *f)
{
	CHECK_CALL(shutdown(f->stream_pair[0], SHUT_WR));
	return 0;
}

static int probe_close(struct fixture *f)
{
	CHECK_CALL(close(f->pipe_fds[1]));
	return 0;
}

static int probe_fcntl_flags(struct fixture *f)
{
	int flags = fcntl(f->pipe_fds[0], F_GETFL);

	CHECK_CALL(flags);
	CHECK_CALL(fcntl(f->pipe_fds[0], F_SETFL, flags | O_NONBLOCK));
	return 0;
}

static int probe_mmap_anonymous(struct fixture *f)
{
	void *memory = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	(void)f;
	if (memory == MAP_FAILED)
		return probe_failed("mmap anonymous");
	CHECK_CALL(munmap(memory, 1 << 20));
	return 0;
}

/* Guest memory: a handed memfd mapped shared, read-write. */
static int probe_mmap_shared_fd(struct fixture *f)
{
	void *memory = mmap(NULL, 1 << 16, PROT_READ | PROT_WRITE, MAP_SHARED,
			    f->memory_fd, 0);

	if (memory == MAP_FAILED)
		return probe_failed("mmap shared");
	((volatile char *)memory)[0] = 1;
	CHECK_CALL(munmap(memory, 1 << 16));
	return 0;
}

static int probe_brk(struct fixture *f)
{
	(void)f;
	if (syscall(SYS_brk, 0) == 0)
		return probe_failed("brk");
	return 0;
}

/* Direct syscall: the vDSO never reaches the filter. */
static int probe_clock_gettime(struct fixture *f)
{
	struct timespec now;

	(void)f;
	CHECK_CALL(syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &now));
	return 0;
}

/* Without a restart block the kernel answers EINTR. */
static int probe_restart_syscall(struct fixture *f)
{
	(void)f;
	if (syscall(SYS_restart_syscall) == 0 || errno != EINTR)
		return probe_failed("restart_syscall");
	return 0;
}

static int probe_signal_mask(struct fixture *f)
{
	sigset_t set;

	(void)f;
	sigemptyset(&set);
	sigaddset(&set, SIGABRT);
	CHECK_CALL(sigprocmask(SIG_UNBLOCK, &set, NULL));
	return 0;
}

/* SIGABRT is ignored in the child, so tgkill(self, SIGABRT) returns. */
static int probe_tgkill_self_abort(struct fixture *f)
{
	(void)f;
	CHECK_CALL(syscall(SYS_tgkill, (long)syscall(SYS_getpid),
			   (long)syscall(SYS_gettid), SIGABRT));
	return 0;
}

/* Broker */

static int probe_accept4(struct fixture *f)
{
	int client = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int accepted;

	CHECK_CALL(client);
	CHECK_CALL(connect(client, (const struct sockaddr *)&f->listen_address,
			   f->listen_address_length));
	accepted = accept4(f->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	CHECK_CALL(accepted);
	CHECK_CALL(close(accepted));
	CHECK_CALL(close(client));
	return 0;
}

/* the control socket: who is the peer? */
static int probe_peer_credentials(struct fixture *f)
{
	struct ucred credentials;
	socklen_t length = sizeof(credentials);
	CHECK_CALL(getsockopt(f->stream_pair[0], SOL_SOCKET, SO_PEERCRED,
			      &credentials, &length));
	return 0;
}

/* any other getsockopt is not needed, so not allowed */
static int probe_getsockopt_other(struct fixture *f)
{
	int value;
	socklen_t length = sizeof(value);
	syscall(SYS_getsockopt, f->stream_pair[0], SOL_SOCKET, SO_RCVBUF, &value, &length);
	return 0;
}

/* libsystemd's own sd_notify, every call it makes (the socket it sends to
 * does not exist: the send fails, the filter must not) */
static int probe_sd_notify(struct fixture *f)
{
	(void)f;
	CHECK_CALL(setenv("NOTIFY_SOCKET", "/nonexistent/vsockmux-sandbox-notify", 1));
	(void)sd_notify(0, "STATUS=sandbox test");
	return 0;
}

static int probe_unlink(struct fixture *f)
{
	CHECK_CALL(unlink(f->unlink_path));
	return 0;
}

static int probe_stop_peer(struct fixture *f)
{
	int status;
	pid_t reaped;

	CHECK_CALL(waitpid(f->peer_pid, &status, WNOHANG));
	CHECK_CALL(kill(f->peer_pid, SIGTERM));
	reaped = waitpid(f->peer_pid, &status, 0);
	CHECK_CALL(reaped);
	if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGTERM) {
		errno = ECHILD;
		return probe_failed("peer did not die of SIGTERM");
	}
	return 0;
}

static int probe_kill_peer_sigkill(struct fixture *f)
{
	CHECK_CALL(kill(f->peer_pid, SIGKILL));
	return 0;
}

static int probe_getrandom(struct fixture *f)
{
	uint64_t seed;

	(void)f;
	CHECK_CALL(syscall(SYS_getrandom, &seed, sizeof(seed), 0));
	return 0;
}

/* ---------------------------------------------------------------- */
/* Forbidden calls (syscall(2) directly, harmless arguments)         */

static int probe_socket_unix(struct fixture *f)
{
	(void)f;
	return syscall(SYS_socket, AF_UNIX, SOCK_STREAM, 0) < 0;
}

static int probe_socket_inet(struct fixture *f)
{
	(void)f;
	return syscall(SYS_socket, AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0) < 0;
}

static int probe_socket_unix_dgram(struct fixture *f)
{
	(void)f;
	return syscall(SYS_socket, AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0) < 0;
}

static int probe_socketpair(struct fixture *f)
{
	int pair[2];

	(void)f;
	return syscall(SYS_socketpair, AF_UNIX, SOCK_STREAM, 0, pair) < 0;
}

static int probe_connect(struct fixture *f)
{
	syscall(SYS_connect, f->stream_pair[0], &f->listen_address,
		f->listen_address_length);
	return 0;
}

static int probe_accept(struct fixture *f)
{
	syscall(SYS_accept, f->listen_fd, NULL, NULL);
	return 0;
}

static int probe_accept4_raw(struct fixture *f)
{
	syscall(SYS_accept4, f->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	return 0;
}

static int probe_accept4_blocking(struct fixture *f)
{
	syscall(SYS_accept4, f->listen_fd, NULL, NULL, 0);
	return 0;
}

static int probe_bind(struct fixture *f)
{
	syscall(SYS_bind, -1, &f->listen_address, f->listen_address_length);
	return 0;
}

static int probe_listen(struct fixture *f)
{
	(void)f;
	syscall(SYS_listen, -1, 1);
	return 0;
}

/*
 * File access: killed, except in sanitizer builds where sanitizer.policy
 * answers EACCES (so a report can finish). Either way nothing is opened.
 */
static int refused_with_eacces(long result, const char *what)
{
	if (result < 0 && errno == EACCES)
		return 0;
	return probe_failed(what);
}

static int probe_open(struct fixture *f)
{
	(void)f;
	return refused_with_eacces(syscall(SYS_open, "/nonexistent-vsockmux", O_RDONLY),
				   "open not refused with EACCES");
}

static int probe_openat(struct fixture *f)
{
	(void)f;
	return refused_with_eacces(syscall(SYS_openat, AT_FDCWD, "/nonexistent-vsockmux",
					   O_RDONLY), "openat not refused with EACCES");
}

static int probe_readlink(struct fixture *f)
{
	char target[64];

	(void)f;
	return refused_with_eacces(syscall(SYS_readlink, "/proc/self/exe", target,
					   sizeof(target)), "readlink not refused with EACCES");
}

static int probe_creat(struct fixture *f)
{
	(void)f;
	syscall(SYS_creat, "/nonexistent-vsockmux/x", 0600);
	return 0;
}

static int probe_execve(struct fixture *f)
{
	char *const argv[] = { NULL };

	(void)f;
	syscall(SYS_execve, "/nonexistent-vsockmux", argv, argv);
	return 0;
}

static int probe_execveat(struct fixture *f)
{
	char *const argv[] = { NULL };

	(void)f;
	syscall(SYS_execveat, AT_FDCWD, "/nonexistent-vsockmux", argv, argv, 0);
	return 0;
}

/* fork and vfork would really run if allowed: the test then fails on the
 * child's exit status, and the extra process exits at once. */
static int probe_fork(struct fixture *f)
{
	(void)f;
	if (syscall(SYS_fork) == 0)
		_exit(0);
	return 0;
}

static int probe_vfork(struct fixture *f)
{
	(void)f;
	if (syscall(SYS_vfork) == 0)
		_exit(0);
	return 0;
}

/* CLONE_SIGHAND without CLONE_VM is EINVAL if the call got through. */
static int probe_clone(struct fixture *f)
{
	(void)f;
	syscall(SYS_clone, CLONE_SIGHAND, NULL, NULL, NULL, 0);
	return 0;
}

static int probe_clone_thread(struct fixture *f)
{
	(void)f;
	syscall(SYS_clone, CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND |
		CLONE_THREAD, NULL, NULL, NULL, 0);
	return 0;
}

static int probe_clone3(struct fixture *f)
{
	(void)f;
	syscall(SYS_clone3, NULL, 0);
	return 0;
}

static int probe_ptrace(struct fixture *f)
{
	(void)f;
	syscall(SYS_ptrace, -1L, 0, NULL, NULL);
	return 0;
}

static int probe_kill_parent(struct fixture *f)
{
	(void)f;
	syscall(SYS_kill, getppid(), 0);
	return 0;
}

static int probe_kill_self(struct fixture *f)
{
	(void)f;
	syscall(SYS_kill, getpid(), 0);
	return 0;
}

static int probe_kill_peer_sigusr1(struct fixture *f)
{
	syscall(SYS_kill, f->peer_pid, SIGUSR1);
	return 0;
}

static int probe_kill_process_group(struct fixture *f)
{
	(void)f;
	syscall(SYS_kill, 0, SIGTERM);
	return 0;
}

static int probe_tkill(struct fixture *f)
{
	(void)f;
	syscall(SYS_tkill, (long)syscall(SYS_gettid), 0);
	return 0;
}

static int probe_tgkill_parent(struct fixture *f)
{
	(void)f;
	syscall(SYS_tgkill, getppid(), getppid(), 0);
	return 0;
}

static int probe_tgkill_self_other_signal(struct fixture *f)
{
	(void)f;
	syscall(SYS_tgkill, getpid(), (long)syscall(SYS_gettid), 0);
	return 0;
}

static int probe_wait4_other(struct fixture *f)
{
	int status;

	(void)f;
	syscall(SYS_wait4, -1, &status, WNOHANG, NULL);
	return 0;
}

static int probe_mmap_exec(struct fixture *f)
{
	(void)f;
	syscall(SYS_mmap, NULL, 4096, PROT_READ | PROT_EXEC,
		MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return 0;
}

static int probe_mmap_exec_shared(struct fixture *f)
{
	syscall(SYS_mmap, NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_SHARED,
		f->memory_fd, 0);
	return 0;
}

static int probe_mprotect_exec(struct fixture *f)
{
	static char page[8192] __attribute__((aligned(4096)));

	(void)f;
	syscall(SYS_mprotect, page, 4096, PROT_READ | PROT_EXEC);
	return 0;
}

static int probe_mprotect(struct fixture *f)
{
	static char page[8192] __attribute__((aligned(4096)));

	(void)f;
	syscall(SYS_mprotect, page, 4096, PROT_READ | PROT_WRITE);
	return 0;
}

static int probe_fcntl_dupfd(struct fixture *f)
{
	syscall(SYS_fcntl, f->pipe_fds[0], F_DUPFD_CLOEXEC, 0);
	return 0;
}

static int probe_fcntl_setown(struct fixture *f)
{
	syscall(SYS_fcntl, f->pipe_fds[0], F_SETOWN, getpid());
	return 0;
}

static int probe_shutdown_read(struct fixture *f)
{
	syscall(SYS_shutdown, f->stream_pair[0], SHUT_RD);
	return 0;
}

static int probe_ioctl(struct fixture *f)
{
	int available;

	syscall(SYS_ioctl, f->pipe_fds[0], FIONREAD, &available);
	return 0;
}

static int probe_unshare(struct fixture *f)
{
	(void)f;
	syscall(SYS_unshare, 0);
	return 0;
}

static int probe_setns(struct fixture *f)
{
	(void)f;
	syscall(SYS_setns, -1, 0);
	return 0;
}

static int probe_mount(struct fixture *f)
{
	(void)f;
	syscall(SYS_mount, NULL, NULL, NULL, 0, NULL);
	return 0;
}

static int probe_bpf(struct fixture *f)
{
	(void)f;
	syscall(SYS_bpf, -1, NULL, 0);
	return 0;
}

static int probe_perf_event_open(struct fixture *f)
{
	(void)f;
	syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0);
	return 0;
}

static int probe_userfaultfd(struct fixture *f)
{
	(void)f;
	syscall(SYS_userfaultfd, O_CLOEXEC);
	return 0;
}

static int probe_io_uring_setup(struct fixture *f)
{
	(void)f;
	syscall(SYS_io_uring_setup, 0, NULL);
	return 0;
}

static int probe_io_uring_enter(struct fixture *f)
{
	(void)f;
	syscall(SYS_io_uring_enter, -1, 0, 0, 0, NULL, 0);
	return 0;
}

static int probe_prctl(struct fixture *f)
{
	(void)f;
	syscall(SYS_prctl, PR_GET_DUMPABLE, 0, 0, 0, 0);
	return 0;
}

static int probe_memfd_create(struct fixture *f)
{
	(void)f;
	syscall(SYS_memfd_create, "x", 0);
	return 0;
}

static int probe_eventfd2(struct fixture *f)
{
	(void)f;
	syscall(SYS_eventfd2, 0, EFD_CLOEXEC);
	return 0;
}

static int probe_pipe2(struct fixture *f)
{
	int fds[2];

	(void)f;
	syscall(SYS_pipe2, fds, O_CLOEXEC);
	return 0;
}

static int probe_dup(struct fixture *f)
{
	syscall(SYS_dup, f->pipe_fds[0]);
	return 0;
}

static int probe_mremap(struct fixture *f)
{
	(void)f;
	syscall(SYS_mremap, NULL, 0, 0, 0);
	return 0;
}

static int probe_process_vm_writev(struct fixture *f)
{
	(void)f;
	syscall(SYS_process_vm_writev, getppid(), NULL, 0, NULL, 0, 0);
	return 0;
}

static int probe_pidfd_open(struct fixture *f)
{
	(void)f;
	syscall(SYS_pidfd_open, getppid(), 0);
	return 0;
}

static int probe_setuid(struct fixture *f)
{
	(void)f;
	syscall(SYS_setuid, 0);
	return 0;
}

static int probe_chdir(struct fixture *f)
{
	(void)f;
	syscall(SYS_chdir, "/");
	return 0;
}

static int probe_unlink_forbidden(struct fixture *f)
{
	syscall(SYS_unlink, f->unlink_path);
	return 0;
}

static int probe_sendfile(struct fixture *f)
{
	syscall(SYS_sendfile, f->pipe_fds[1], f->memory_fd, NULL, 1);
	return 0;
}

static int probe_timerfd_create(struct fixture *f)
{
	(void)f;
	syscall(SYS_timerfd_create, CLOCK_MONOTONIC, TFD_CLOEXEC);
	return 0;
}

static int probe_epoll_create1(struct fixture *f)
{
	(void)f;
	syscall(SYS_epoll_create1, EPOLL_CLOEXEC);
	return 0;
}

static int probe_wait4_muxer(struct fixture *f)
{
	(void)f;
	syscall(SYS_wait4, -1, NULL, WNOHANG, NULL);
	return 0;
}

#define MUXER SANDBOX_ROLE_MUXER
#define BROKER SANDBOX_ROLE_BROKER
#define ALLOWED(role, probe) { #probe, role, EXPECT_SUCCESS, probe_##probe }
#define FORBIDDEN(role, probe) { #probe, role, EXPECT_SIGSYS, probe_##probe }
#ifdef SANDBOX_SANITIZER
#define NO_FILES(role, probe) { #probe, role, EXPECT_REFUSED, probe_##probe }
#else
#define NO_FILES(role, probe) FORBIDDEN(role, probe)
#endif

static const struct probe_case probe_cases[] = {
	/* muxer: allowed, with the arguments the data path uses */
	ALLOWED(MUXER, epoll),
	ALLOWED(MUXER, timerfd_settime),
	ALLOWED(MUXER, read_write),
	ALLOWED(MUXER, readv_writev),
	ALLOWED(MUXER, send_recv),
	ALLOWED(MUXER, sendmsg_recvmsg),
	ALLOWED(MUXER, shutdown_write),
	ALLOWED(MUXER, close),
	ALLOWED(MUXER, fcntl_flags),
	ALLOWED(MUXER, mmap_anonymous),
	ALLOWED(MUXER, mmap_shared_fd),
	ALLOWED(MUXER, brk),
	ALLOWED(MUXER, clock_gettime),
	ALLOWED(MUXER, restart_syscall),
	ALLOWED(MUXER, signal_mask),
	ALLOWED(MUXER, tgkill_self_abort),
	/* muxer: forbidden calls (the security model's list and more) */
	FORBIDDEN(MUXER, socket_unix),
	FORBIDDEN(MUXER, socket_inet),
	FORBIDDEN(MUXER, socketpair),
	FORBIDDEN(BROKER, getsockopt_other),
	FORBIDDEN(MUXER, peer_credentials),
	FORBIDDEN(MUXER, connect),
	FORBIDDEN(MUXER, accept),
	FORBIDDEN(MUXER, accept4_raw),
	FORBIDDEN(MUXER, bind),
	FORBIDDEN(MUXER, listen),
	NO_FILES(MUXER, open),
	NO_FILES(MUXER, openat),
	NO_FILES(MUXER, readlink),
	FORBIDDEN(MUXER, creat),
	FORBIDDEN(MUXER, execve),
	FORBIDDEN(MUXER, execveat),
	FORBIDDEN(MUXER, fork),
	FORBIDDEN(MUXER, vfork),
	FORBIDDEN(MUXER, clone),
	FORBIDDEN(MUXER, clone_thread),
	FORBIDDEN(MUXER, clone3),
	FORBIDDEN(MUXER, ptrace),
	FORBIDDEN(MUXER, kill_parent),
	FORBIDDEN(MUXER, kill_self),
	FORBIDDEN(MUXER, tkill),
	FORBIDDEN(MUXER, ioctl),
	FORBIDDEN(MUXER, unshare),
	FORBIDDEN(MUXER, setns),
	FORBIDDEN(MUXER, mount),
	FORBIDDEN(MUXER, bpf),
	FORBIDDEN(MUXER, perf_event_open),
	FORBIDDEN(MUXER, userfaultfd),
	FORBIDDEN(MUXER, io_uring_setup),
	FORBIDDEN(MUXER, io_uring_enter),
	FORBIDDEN(MUXER, mprotect),
	FORBIDDEN(MUXER, prctl),
	FORBIDDEN(MUXER, memfd_create),
	FORBIDDEN(MUXER, eventfd2),
	FORBIDDEN(MUXER, pipe2),
	FORBIDDEN(MUXER, dup),
	FORBIDDEN(MUXER, mremap),
	FORBIDDEN(MUXER, process_vm_writev),
	FORBIDDEN(MUXER, pidfd_open),
	FORBIDDEN(MUXER, setuid),
	FORBIDDEN(MUXER, chdir),
	FORBIDDEN(MUXER, unlink_forbidden),
	FORBIDDEN(MUXER, sendfile),
	FORBIDDEN(MUXER, timerfd_create),
	FORBIDDEN(MUXER, epoll_create1),
	FORBIDDEN(MUXER, wait4_muxer),
	/* muxer: allowed calls with a forbidden argument */
	FORBIDDEN(MUXER, mmap_exec),
	FORBIDDEN(MUXER, mmap_exec_shared),
	FORBIDDEN(MUXER, mprotect_exec),
	FORBIDDEN(MUXER, fcntl_dupfd),
	FORBIDDEN(MUXER, fcntl_setown),
	FORBIDDEN(MUXER, shutdown_read),
	FORBIDDEN(MUXER, tgkill_parent),
	FORBIDDEN(MUXER, tgkill_self_other_signal),

	/* broker: allowed */
	ALLOWED(BROKER, epoll),
	ALLOWED(BROKER, timerfd_settime),
	ALLOWED(BROKER, read_write),
	ALLOWED(BROKER, sendmsg_recvmsg),
	ALLOWED(BROKER, close),
	ALLOWED(BROKER, accept4),
	ALLOWED(BROKER, send_recv),
	ALLOWED(BROKER, peer_credentials),
	ALLOWED(BROKER, unlink),
	ALLOWED(BROKER, stop_peer),
	ALLOWED(BROKER, kill_peer_sigkill),
	ALLOWED(BROKER, mmap_anonymous),
	ALLOWED(BROKER, brk),
	ALLOWED(BROKER, getrandom),
	ALLOWED(BROKER, clock_gettime),
	ALLOWED(BROKER, restart_syscall),
	ALLOWED(BROKER, signal_mask),
	ALLOWED(BROKER, tgkill_self_abort),
	ALLOWED(BROKER, sd_notify),
	/* broker: forbidden */
	FORBIDDEN(BROKER, execve),
	FORBIDDEN(BROKER, execveat),
	FORBIDDEN(BROKER, ptrace),
	FORBIDDEN(BROKER, mount),
	FORBIDDEN(BROKER, fork),
	FORBIDDEN(BROKER, clone),
	FORBIDDEN(BROKER, clone3),
	FORBIDDEN(BROKER, socketpair),
	FORBIDDEN(BROKER, bind),
	FORBIDDEN(BROKER, listen),
	NO_FILES(BROKER, open),
	NO_FILES(BROKER, openat),
	NO_FILES(BROKER, readlink),
	FORBIDDEN(BROKER, unshare),
	FORBIDDEN(BROKER, setns),
	FORBIDDEN(BROKER, ioctl),
	FORBIDDEN(BROKER, bpf),
	FORBIDDEN(BROKER, io_uring_setup),
	FORBIDDEN(BROKER, mprotect),
	FORBIDDEN(BROKER, setuid),
	FORBIDDEN(BROKER, process_vm_writev),
	/* broker: allowed calls with a forbidden argument */
	FORBIDDEN(BROKER, socket_inet),
	FORBIDDEN(BROKER, socket_unix_dgram),
	FORBIDDEN(BROKER, accept4_blocking),
	FORBIDDEN(BROKER, mmap_exec),
	FORBIDDEN(BROKER, mmap_exec_shared),
	FORBIDDEN(BROKER, mprotect_exec),
	FORBIDDEN(BROKER, kill_parent),
	FORBIDDEN(BROKER, kill_peer_sigusr1),
	FORBIDDEN(BROKER, kill_process_group),
	FORBIDDEN(BROKER, wait4_other),
	FORBIDDEN(BROKER, tgkill_parent),
	FORBIDDEN(BROKER, tgkill_self_other_signal),
};

/* ---------------------------------------------------------------- */
/* Children                                                          */

static const char test_name[] = "vsockmux-sandbox-test";

/* The file a child may unlink; the parent removes what is left. */
static void unlink_path_for(pid_t child, char *path, size_t size)
{
	snprintf(path, size, "/tmp/%s-%d", test_name, (int)child);
}

static int fixture_open(struct fixture *f, enum sandbox_role role)
{
	int file_fd;

	memset(f, 0, sizeof(*f));
	if (pipe2(f->pipe_fds, O_CLOEXEC) < 0 ||
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, f->stream_pair) < 0 ||
	    socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, f->seqpacket_pair) < 0)
		return -1;
	f->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	f->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	f->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	f->memory_fd = memfd_create("guest", MFD_CLOEXEC);
	f->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (f->event_fd < 0 || f->timer_fd < 0 || f->epoll_fd < 0 || f->memory_fd < 0 ||
	    f->listen_fd < 0 || ftruncate(f->memory_fd, 1 << 16) < 0)
		return -1;
	/* abstract address: nothing to clean up on disk */
	f->listen_address.sun_family = AF_UNIX;
	snprintf(f->listen_address.sun_path + 1, sizeof(f->listen_address.sun_path) - 1,
		 "%s-%d", test_name, (int)getpid());
	f->listen_address_length = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 +
					       strlen(f->listen_address.sun_path + 1));
	if (bind(f->listen_fd, (const struct sockaddr *)&f->listen_address,
		 f->listen_address_length) < 0 || listen(f->listen_fd, 4) < 0)
		return -1;
	unlink_path_for(getpid(), f->unlink_path, sizeof(f->unlink_path));
	file_fd = open(f->unlink_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (file_fd < 0)
		return -1;
	close(file_fd);
	if (role == SANDBOX_ROLE_BROKER) {
		pid_t broker_pid = getpid();
		f->peer_pid = fork();
		if (f->peer_pid < 0)
			return -1;
		if (f->peer_pid == 0) {
			/* stand-in muxer: waits to be killed, dies with the
			   broker, and holds no end of the parent's stderr pipe */
			close(STDOUT_FILENO);
			close(STDERR_FILENO);
			if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0 ||
			    getppid() != broker_pid)
				_exit(0);
			for (;;)
				pause();
		}
	}
	return 0;
}

/* Default dispositions: cmocka catches SIGSYS and friends. */
static void child_reset_signals(void)
{
	static const int signals[] = { SIGSYS, SIGABRT, SIGSEGV, SIGBUS, SIGILL, SIGFPE };
	sigset_t none;

	for (size_t i = 0; i < sizeof(signals) / sizeof(signals[0]); i++)
		signal(signals[i], SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	alarm(CHILD_TIMEOUT_SECONDS);
}

static int apply_role(enum sandbox_role role, enum sandbox_mode mode,
		      const struct fixture *fixture)
{
	if (role == SANDBOX_ROLE_BROKER)
		return sandbox_apply_with_peer(role, mode, fixture->peer_pid);
	return sandbox_apply(role, mode);
}

struct child_result {
	int status;
	char output[512];   /* the child's stderr (when captured) */
};

enum child_action { CHILD_PROBE, CHILD_ABORT };

struct child_plan {
	enum sandbox_role role;
	enum sandbox_mode mode;
	enum child_action action;
	probe_fn probe;
};

static void run_child(const struct child_plan *plan, int stderr_fd)
{
	struct fixture fixture;

	child_reset_signals();
	if (stderr_fd >= 0 && dup2(stderr_fd, STDERR_FILENO) < 0)
		_exit(CHILD_SETUP_FAILED);
	if (fixture_open(&fixture, plan->role) < 0)
		_exit(CHILD_SETUP_FAILED);
	if (plan->action == CHILD_PROBE && plan->probe == probe_tgkill_self_abort)
		signal(SIGABRT, SIG_IGN);
	if (apply_role(plan->role, plan->mode, &fixture) < 0)
		_exit(CHILD_APPLY_FAILED);
	if (plan->action == CHILD_ABORT)
		abort();
	_exit(plan->probe(&fixture));
}

/* Fork, run the plan in the child, collect its status and stderr. */
static void run_plan(const struct child_plan *plan, struct child_result *result)
{
	char leftover[64];
	int output_pipe[2];
	size_t used = 0;
	pid_t child;

	memset(result, 0, sizeof(*result));
	assert_int_equal(pipe2(output_pipe, O_CLOEXEC), 0);
	fflush(stdout);
	fflush(stderr);
	child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		close(output_pipe[0]);
		run_child(plan, output_pipe[1]);
	}
	close(output_pipe[1]);
	for (;;) {
		ssize_t got = read(output_pipe[0], result->output + used,
				   sizeof(result->output) - 1 - used);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			break;
		used += (size_t)got;
		if (used == sizeof(result->output) - 1)
			break;
	}
	result->output[used] = '\0';
	close(output_pipe[0]);
	assert_int_equal(waitpid(child, &result->status, 0), child);
	unlink_path_for(child, leftover, sizeof(leftover));
	(void)unlink(leftover);
}

static void describe_status(int status, char *text, size_t size)
{
	if (WIFEXITED(status))
		snprintf(text, size, "exit %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(text, size, "signal %d (%s)", WTERMSIG(status),
			 strsignal(WTERMSIG(status)));
	else
		snprintf(text, size, "status %#x", status);
}

static const char *const expectation_text[] = {
	[EXPECT_SUCCESS] = "success (exit 0)",
	[EXPECT_SIGSYS] = "SIGSYS",
	[EXPECT_REFUSED] = "EACCES (exit 0)",
};

static void test_probe_case(void **state)
{
	const struct probe_case *probe_case = *state;
	const struct child_plan plan = {
		.role = probe_case->role, .mode = SANDBOX_ENFORCE,
		.action = CHILD_PROBE, .probe = probe_case->probe,
	};
	struct child_result result;
	char how[80];
	bool ok;

	run_plan(&plan, &result);
	describe_status(result.status, how, sizeof(how));
	if (probe_case->expect == EXPECT_SIGSYS)
		ok = WIFSIGNALED(result.status) && WTERMSIG(result.status) == SIGSYS;
	else
		ok = WIFEXITED(result.status) && WEXITSTATUS(result.status) == 0;
	if (!ok)
		fail_msg("%s/%s: expected %s, child ended with %s; its stderr: %s",
			 sandbox_role_name(probe_case->role), probe_case->name,
			 expectation_text[probe_case->expect], how, result.output);
}

/* abort() must still end in SIGABRT under each filter. */
static void test_abort(void **state)
{
	const enum sandbox_role *role = *state;
	const struct child_plan plan = {
		.role = *role, .mode = SANDBOX_ENFORCE, .action = CHILD_ABORT,
	};
	struct child_result result;
	char how[80];

	run_plan(&plan, &result);
	describe_status(result.status, how, sizeof(how));
	if (!WIFSIGNALED(result.status) || WTERMSIG(result.status) != SIGABRT)
		fail_msg("%s: abort() ended with %s, not SIGABRT; stderr: %s",
			 sandbox_role_name(*role), how, result.output);
}

/* --sandbox-debug: the blocked call is named on stderr, exit 159. */
static void check_debug_mode(enum sandbox_role role, probe_fn probe,
			     const char *syscall_name, long syscall_nr)
{
	const struct child_plan plan = {
		.role = role, .mode = SANDBOX_DEBUG, .action = CHILD_PROBE, .probe = probe,
	};
	struct child_result result;
	char expected[128];
	char how[80];

	run_plan(&plan, &result);
	describe_status(result.status, how, sizeof(how));
	snprintf(expected, sizeof(expected), "vsockmuxd[%s] sandbox: blocked syscall %s (%ld)\n",
		 sandbox_role_name(role), syscall_name, syscall_nr);
	if (!WIFEXITED(result.status) || WEXITSTATUS(result.status) != SANDBOX_DEBUG_EXIT_CODE)
		fail_msg("%s debug mode: expected exit %d, got %s; stderr: %s",
			 sandbox_role_name(role), SANDBOX_DEBUG_EXIT_CODE, how, result.output);
	if (!strstr(result.output, expected))
		fail_msg("%s debug mode: expected the line \"%s\" in: %s",
			 sandbox_role_name(role), expected, result.output);
}

static void test_debug_mode_muxer(void **state)
{
	(void)state;
	check_debug_mode(SANDBOX_ROLE_MUXER, probe_socket_unix, "socket", SYS_socket);
	check_debug_mode(SANDBOX_ROLE_MUXER, probe_mmap_exec, "mmap", SYS_mmap);
}

static void test_debug_mode_broker(void **state)
{
	(void)state;
	check_debug_mode(SANDBOX_ROLE_BROKER, probe_ptrace, "ptrace", SYS_ptrace);
	check_debug_mode(SANDBOX_ROLE_BROKER, probe_socket_inet, "socket", SYS_socket);
}

/* Without the peer's pid the broker policy ($PEER_PID) refuses to load. */
static void test_broker_needs_peer(void **state)
{
	struct child_result result;
	int output_pipe[2];
	pid_t child;

	(void)state;
	memset(&result, 0, sizeof(result));
	assert_int_equal(pipe2(output_pipe, O_CLOEXEC), 0);
	child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		child_reset_signals();
		if (dup2(output_pipe[1], STDERR_FILENO) < 0)
			_exit(CHILD_SETUP_FAILED);
		_exit(sandbox_apply(SANDBOX_ROLE_BROKER, SANDBOX_ENFORCE) == -EINVAL ? 0 : 1);
	}
	close(output_pipe[1]);
	assert_true(read(output_pipe[0], result.output, sizeof(result.output) - 1) >= 0);
	close(output_pipe[0]);
	assert_int_equal(waitpid(child, &result.status, 0), child);
	assert_true(WIFEXITED(result.status));
	assert_int_equal(WEXITSTATUS(result.status), 0);
	assert_non_null(strstr(result.output, "PEER_PID"));
}

/* /proc/PID/status of a filtered child: Seccomp 2, NoNewPrivs 1. */
static void check_status_fields(enum sandbox_role role)
{
	int go[2], ready[2];
	char path[64], status_text[4096], byte = 0;
	size_t length;
	FILE *file;
	int status;
	pid_t child;

	assert_int_equal(pipe2(go, O_CLOEXEC), 0);
	assert_int_equal(pipe2(ready, O_CLOEXEC), 0);
	child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		struct fixture fixture;
		child_reset_signals();
		if (fixture_open(&fixture, role) < 0 || apply_role(role, SANDBOX_ENFORCE,
								   &fixture) < 0)
			_exit(CHILD_APPLY_FAILED);
		if (write(ready[1], &byte, 1) != 1 || read(go[0], &byte, 1) < 0)
			_exit(CHILD_PROBE_FAILED);
		_exit(0);
	}
	close(ready[1]);
	close(go[0]);
	assert_int_equal(read(ready[0], &byte, 1), 1);
	snprintf(path, sizeof(path), "/proc/%d/status", (int)child);
	file = fopen(path, "r");
	assert_non_null(file);
	length = fread(status_text, 1, sizeof(status_text) - 1, file);
	status_text[length] = '\0';
	fclose(file);
	assert_int_equal(write(go[1], &byte, 1), 1);
	close(go[1]);
	close(ready[0]);
	assert_int_equal(waitpid(child, &status, 0), child);
	unlink_path_for(child, path, sizeof(path));
	(void)unlink(path);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_non_null(strstr(status_text, "\nSeccomp:\t2\n"));
	assert_non_null(strstr(status_text, "\nNoNewPrivs:\t1\n"));
}

static void test_status_fields(void **state)
{
	(void)state;
	check_status_fields(SANDBOX_ROLE_MUXER);
	check_status_fields(SANDBOX_ROLE_BROKER);
}

/* TSYNC: a thread that existed before the filter is filtered too. */
static int thread_go_fd = -1;

static void *thread_calls_socket(void *unused)
{
	char byte;

	(void)unused;
	if (read(thread_go_fd, &byte, 1) != 1)
		_exit(CHILD_SETUP_FAILED);
	syscall(SYS_socket, AF_UNIX, SOCK_STREAM, 0);
	_exit(0);
	return NULL;
}

static void test_filter_covers_threads(void **state)
{
	int go[2];
	int status;
	pid_t child;

	(void)state;
	assert_int_equal(pipe2(go, O_CLOEXEC), 0);
	child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		pthread_t thread;
		char byte = 0;
		child_reset_signals();
		thread_go_fd = go[0];
		if (pthread_create(&thread, NULL, thread_calls_socket, NULL) != 0)
			_exit(CHILD_SETUP_FAILED);
		if (sandbox_apply(SANDBOX_ROLE_MUXER, SANDBOX_ENFORCE) < 0)
			_exit(CHILD_APPLY_FAILED);
		if (write(go[1], &byte, 1) != 1)
			_exit(CHILD_PROBE_FAILED);
		for (;;)
			pause(); /* the thread's socket() ends the process */
	}
	close(go[0]);
	close(go[1]);
	assert_int_equal(waitpid(child, &status, 0), child);
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGSYS);
}

static void test_policy_sizes(void **state)
{
	size_t muxer = sandbox_policy_syscall_count(SANDBOX_ROLE_MUXER);
	size_t broker = sandbox_policy_syscall_count(SANDBOX_ROLE_BROKER);

	(void)state;
	printf("# policy sizes: muxer %zu syscalls, broker %zu syscalls\n", muxer, broker);
	assert_true(muxer > 0);
	assert_true(muxer <= MUXER_MAX_SYSCALLS);
	assert_true(broker > 0);
	assert_string_equal(sandbox_role_name(SANDBOX_ROLE_MUXER), "muxer");
	assert_string_equal(sandbox_role_name(SANDBOX_ROLE_BROKER), "broker");
	assert_string_equal(sandbox_syscall_name(SYS_socket), "socket");
	assert_null(sandbox_syscall_name(-1));
}

static const enum sandbox_role muxer_role = SANDBOX_ROLE_MUXER;
static const enum sandbox_role broker_role = SANDBOX_ROLE_BROKER;

int main(void)
{
	const struct CMUnitTest fixed_tests[] = {
		cmocka_unit_test(test_policy_sizes),
		cmocka_unit_test_prestate(test_abort, (void *)&muxer_role),
		cmocka_unit_test_prestate(test_abort, (void *)&broker_role),
		cmocka_unit_test(test_debug_mode_muxer),
		cmocka_unit_test(test_debug_mode_broker),
		cmocka_unit_test(test_broker_needs_peer),
		cmocka_unit_test(test_status_fields),
		cmocka_unit_test(test_filter_covers_threads),
	};
	const size_t fixed_count = sizeof(fixed_tests) / sizeof(fixed_tests[0]);
	const size_t case_count = sizeof(probe_cases) / sizeof(probe_cases[0]);
	struct CMUnitTest *tests = calloc(fixed_count + case_count, sizeof(*tests));
	char (*names)[80] = calloc(case_count, sizeof(*names));
	int failures;

	if (!tests || !names) {
		free(tests);
		free(names);
		return 1;
	}
	memcpy(tests, fixed_tests, sizeof(fixed_tests));
	for (size_t i = 0; i < case_count; i++) {
		const struct probe_case *probe_case = &probe_cases[i];
		static const char *const verbs[] = {
			[EXPECT_SUCCESS] = "allows",
			[EXPECT_SIGSYS] = "kills",
			[EXPECT_REFUSED] = "refuses",
		};
		snprintf(names[i], sizeof(names[i]), "%s %s %s",
			 sandbox_role_name(probe_case->role), verbs[probe_case->expect],
			 probe_case->name);
		tests[fixed_count + i].name = names[i];
		tests[fixed_count + i].test_func = test_probe_case;
		tests[fixed_count + i].initial_state = (void *)probe_case;
	}
	failures = _cmocka_run_group_tests("sandbox", tests, fixed_count + case_count,
					   NULL, NULL);
	free(tests);
	free(names);
	return failures == 0 ? 0 : 1;
}
