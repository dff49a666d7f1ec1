/*
 * test_privileges_root.c - policy/privileges.c started as root: the user
 * plan, the drop to "nobody" (ids, every capability set, no-new-privs,
 * dumpable, pdeathsig really firing), the muxer's namespaces and empty
 * read-only root, and the resource limits read back and enforced.
 *
 * Every drop runs in a forked child; the runner keeps its privileges.
 * Needs root: exits 77 (skipped) otherwise.
 *
 * Two groups, chosen by the first argument, each its own meson test:
 * "drop" (the plan, the drops, the resource limits) and "namespaces" (the
 * muxer's isolation). "namespaces" exits 77 (skipped) when this machine
 * cannot give the muxer namespaces, the same conditions under which the
 * daemon's muxer runs without them (no right to unshare, namespaces
 * disabled, "/" not a mount point as in a chroot); any other failure of
 * the probe fails the group. Without an argument both groups run: exit 1
 * if a case failed, else 77 if the namespace group could not run, else 0.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/ipc.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "priv_child.h"
#include "privileges.h"

#define SKIP_EXIT_CODE 77
#define OUTPUT_SIZE 8192
#define TEST_MAX_CONNECTIONS 100u

static uid_t nobody_uid;
static gid_t nobody_gid;

enum probe_result { NAMESPACES_USABLE, NAMESPACES_UNAVAILABLE, NAMESPACES_BROKEN };

/* Probe child exit codes: which call failed, and was it expected here. */
enum {
	PROBE_OK = 0,
	PROBE_UNSHARE_UNAVAILABLE = 10,
	PROBE_ROOT_NOT_MOUNT_POINT = 11,
	PROBE_UNSHARE_FAILED = 12,
	PROBE_MOUNT_FAILED = 13,
};

static int probe_child(void)
{
	if (unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC) != 0) {
		/* as privileges_isolate_muxer: no right, or not available */
		if (errno == EPERM || errno == EINVAL || errno == ENOSPC)
			return PROBE_UNSHARE_UNAVAILABLE;
		fprintf(stderr, "probe: unshare: %s\n", strerror(errno));
		return PROBE_UNSHARE_FAILED;
	}
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) {
		if (errno == EINVAL)
			return PROBE_ROOT_NOT_MOUNT_POINT;
		fprintf(stderr, "probe: making mounts private: %s\n", strerror(errno));
		return PROBE_MOUNT_FAILED;
	}
	return PROBE_OK;
}

/*
 * Can the muxer get its namespaces here? Root in a container may still
 * lack CAP_SYS_ADMIN, and in a chroot "/" is not a mount point: probed in
 * a child. Unavailable exactly when privileges_isolate_muxer would run
 * the muxer without isolation; anything else that fails is broken.
 */
static enum probe_result probe_namespaces(void)
{
	int status;
	pid_t pid = fork();

	if (pid == 0)
		_exit(probe_child());
	if (pid < 0 || waitpid(pid, &status, 0) != pid) {
		perror("probe");
		return NAMESPACES_BROKEN;
	}
	if (!WIFEXITED(status)) {
		fprintf(stderr, "probe: child died (status 0x%x)\n", (unsigned)status);
		return NAMESPACES_BROKEN;
	}
	switch (WEXITSTATUS(status)) {
	case PROBE_OK:
		return NAMESPACES_USABLE;
	case PROBE_UNSHARE_UNAVAILABLE:
		printf("SKIP: cannot isolate here: no right to create namespaces "
		       "(no CAP_SYS_ADMIN?) or namespaces disabled\n");
		return NAMESPACES_UNAVAILABLE;
	case PROBE_ROOT_NOT_MOUNT_POINT:
		printf("SKIP: cannot isolate here: \"/\" is not a mount point (chroot)\n");
		return NAMESPACES_UNAVAILABLE;
	default:
		return NAMESPACES_BROKEN;
	}
}

/* ---- plan ----------------------------------------------------------------- */

static void test_plan_unknown_user_fails(void **state)
{
	struct privilege_plan plan;
	(void)state;

	assert_int_equal(privileges_plan("vsockmux-no-such-user", &plan), -1);
}

static void test_plan_refuses_root(void **state)
{
	struct privilege_plan plan;
	(void)state;

	assert_int_equal(privileges_plan("root", &plan), -1);
}

static void test_plan_default_user(void **state)
{
	struct privilege_plan plan;
	const struct passwd *dedicated = getpwnam(PRIVILEGES_DEFAULT_USER);
	(void)state;

	assert_int_equal(privileges_plan(NULL, &plan), 0);
	assert_true(plan.change_user);
	if (dedicated) {
		assert_string_equal(plan.user_name, PRIVILEGES_DEFAULT_USER);
		assert_int_equal(plan.uid, dedicated->pw_uid);
	} else {
		assert_string_equal(plan.user_name, "nobody");
		assert_int_equal(plan.uid, nobody_uid);
		assert_int_equal(plan.gid, nobody_gid);
	}
}

/* ---- drop ----------------------------------------------------------------- */

static void plan_nobody(struct privilege_plan *plan)
{
	CHILD_CHECK(privileges_plan("nobody", plan) == 0);
	CHILD_CHECK(plan->change_user && plan->uid == nobody_uid);
}

static void check_ids_are_nobodys(void)
{
	char expected_uids[64], expected_gids[64], value[128];

	snprintf(expected_uids, sizeof(expected_uids), "%u\t%u\t%u\t%u",
		 (unsigned)nobody_uid, (unsigned)nobody_uid, (unsigned)nobody_uid,
		 (unsigned)nobody_uid);
	snprintf(expected_gids, sizeof(expected_gids), "%u\t%u\t%u\t%u",
		 (unsigned)nobody_gid, (unsigned)nobody_gid, (unsigned)nobody_gid,
		 (unsigned)nobody_gid);
	CHILD_CHECK(proc_status_field("Uid", value, sizeof(value)) == 0);
	CHILD_CHECK(strcmp(value, expected_uids) == 0);
	CHILD_CHECK(proc_status_field("Gid", value, sizeof(value)) == 0);
	CHILD_CHECK(strcmp(value, expected_gids) == 0);
	snprintf(expected_gids, sizeof(expected_gids), "%u", (unsigned)nobody_gid);
	CHILD_CHECK(proc_status_field("Groups", value, sizeof(value)) == 0);
	CHILD_CHECK(strcmp(value, expected_gids) == 0);
}

static void drop_to_nobody_body(void *arg)
{
	struct privilege_plan plan;
	char value[64];
	int signal_number = 0;
	(void)arg;

	plan_nobody(&plan);
	const bool shadow_exists = access("/etc/shadow", F_OK) == 0;
	CHILD_CHECK(proc_status_caps("CapEff") != 0); /* we had something */
	CHILD_CHECK(privileges_drop(&plan, SIGUSR2, getppid()) == 0);

	check_ids_are_nobodys();
	CHILD_CHECK(proc_status_caps("CapEff") == 0);
	CHILD_CHECK(proc_status_caps("CapPrm") == 0);
	CHILD_CHECK(proc_status_caps("CapInh") == 0);
	CHILD_CHECK(proc_status_caps("CapBnd") == 0);
	CHILD_CHECK(proc_status_caps("CapAmb") == 0);
	CHILD_CHECK(proc_status_field("NoNewPrivs", value, sizeof(value)) == 0);
	CHILD_CHECK(strcmp(value, "1") == 0);
	CHILD_CHECK(prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 0);
	CHILD_CHECK(prctl(PR_GET_PDEATHSIG, &signal_number, 0, 0, 0) == 0);
	CHILD_CHECK(signal_number == SIGUSR2);

	/* no way back, and root's files are out of reach */
	CHILD_CHECK(setuid(0) == -1 && errno == EPERM);
	CHILD_CHECK(setgid(0) == -1 && errno == EPERM);
	CHILD_CHECK(setresuid(0, 0, 0) == -1);
	if (shadow_exists)
		CHILD_CHECK(open("/etc/shadow", O_RDONLY | O_CLOEXEC) == -1 &&
			    errno == EACCES);
}

static void test_drop_to_nobody(void **state)
{
	char output[OUTPUT_SIZE];
	(void)state;

	assert_true(child_succeeded(child_run(drop_to_nobody_body, NULL, output,
					      sizeof(output))));
	assert_non_null(strstr(output, "running as nobody"));
}

/* The broker's drop: no death signal; the kernel's reset leaves none. */
static void broker_drop_body(void *arg)
{
	struct privilege_plan plan;
	struct rlimit limit;
	int signal_number = -1;
	(void)arg;

	plan_nobody(&plan);
	CHILD_CHECK(getrlimit(RLIMIT_FSIZE, &limit) == 0);
	const rlim_t fsize_before = limit.rlim_cur;
	CHILD_CHECK(privileges_limit_resources(false, TEST_MAX_CONNECTIONS) == 0);
	CHILD_CHECK(privileges_drop(&plan, 0, 0) == 0);
	check_ids_are_nobodys();
	CHILD_CHECK(proc_status_caps("CapEff") == 0);
	CHILD_CHECK(proc_status_caps("CapBnd") == 0);
	CHILD_CHECK(prctl(PR_GET_PDEATHSIG, &signal_number, 0, 0, 0) == 0);
	CHILD_CHECK(signal_number == 0);
	CHILD_CHECK(getrlimit(RLIMIT_NOFILE, &limit) == 0);
	CHILD_CHECK(limit.rlim_cur == TEST_MAX_CONNECTIONS + PRIVILEGES_NOFILE_RESERVE);
	CHILD_CHECK(limit.rlim_max == TEST_MAX_CONNECTIONS + PRIVILEGES_NOFILE_RESERVE);
	/* the broker may fork and write files (within its rights) */
	CHILD_CHECK(getrlimit(RLIMIT_FSIZE, &limit) == 0);
	CHILD_CHECK(limit.rlim_cur == fsize_before);
	CHILD_CHECK(getrlimit(RLIMIT_NPROC, &limit) == 0);
	CHILD_CHECK(limit.rlim_cur != 0);
}

static void test_broker_drop(void **state)
{
	(void)state;
	assert_true(child_succeeded(child_run(broker_drop_body, NULL, NULL, 0)));
}

/*
 * PR_SET_PDEATHSIG really fires: we (a subreaper) fork a middle process
 * that forks the dropping one; killing the middle one must deliver
 * SIGTERM to the dropped grandchild, which is then reparented to us.
 */
static void pdeathsig_body(void *arg)
{
	struct privilege_plan plan;
	int ready[2];
	pid_t middle, grandchild = -1;
	int status;
	(void)arg;

	alarm(20);
	plan_nobody(&plan);
	CHILD_CHECK(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0);
	CHILD_CHECK(pipe(ready) == 0);
	middle = fork();
	CHILD_CHECK(middle >= 0);
	if (middle == 0) {
		pid_t middle_pid = getpid();
		if (fork() == 0) {
			pid_t self = getpid();
			alarm(20);
			if (privileges_drop(&plan, SIGTERM, middle_pid) != 0 ||
			    write(ready[1], &self, sizeof(self)) != sizeof(self))
				_exit(CHILD_CHECK_FAILED);
			for (;;)
				pause();
		}
		for (;;)
			pause();  /* until we kill it */
	}
	close(ready[1]);
	/* the grandchild sends its pid once its death signal is armed */
	CHILD_CHECK(read(ready[0], &grandchild, sizeof(grandchild)) == sizeof(grandchild));
	CHILD_CHECK(grandchild > 0);
	CHILD_CHECK(kill(middle, SIGKILL) == 0);
	CHILD_CHECK(waitpid(middle, &status, 0) == middle);
	CHILD_CHECK(waitpid(grandchild, &status, 0) == grandchild);
	CHILD_CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM);
}

static void test_pdeathsig_fires(void **state)
{
	(void)state;
	assert_true(child_succeeded(child_run(pdeathsig_body, NULL, NULL, 0)));
}

/* The parent died before the death signal was armed: drop must fail. */
static void parent_gone_body(void *arg)
{
	struct privilege_plan plan;
	pid_t middle, dropping;
	int status;
	(void)arg;

	alarm(20);
	plan_nobody(&plan);
	CHILD_CHECK(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0);
	middle = fork();
	CHILD_CHECK(middle >= 0);
	if (middle == 0) {
		pid_t middle_pid = getpid();
		if (fork() == 0) {
			/* wait until the middle process is gone and we are reparented */
			for (int tries = 0; getppid() == middle_pid; tries++) {
				if (tries > 5000)
					_exit(CHILD_CHECK_FAILED);
				usleep(1000);
			}
			_exit(privileges_drop(&plan, SIGTERM, middle_pid) == -1 ? 0 : 1);
		}
		_exit(0);
	}
	CHILD_CHECK(waitpid(middle, &status, 0) == middle);
	dropping = waitpid(-1, &status, 0);
	CHILD_CHECK(dropping > 0);
	CHILD_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void test_drop_fails_when_parent_gone(void **state)
{
	char output[OUTPUT_SIZE];
	(void)state;

	assert_true(child_succeeded(child_run(parent_gone_body, NULL, output,
					      sizeof(output))));
	assert_non_null(strstr(output, "exited"));
}

/* ---- muxer isolation -------------------------------------------------------- */

struct isolation_fixture {
	uint16_t listener_port;   /* TCP on 127.0.0.1 in the host namespace */
	key_t shm_key;            /* SysV segment in the host IPC namespace */
	int ready[2];             /* child -> parent: isolated */
	int go[2];                /* parent -> child: namespaces inspected */
};

static int connect_to_listener(uint16_t port)
{
	struct sockaddr_in address = {
		.sin_family = AF_INET,
		.sin_port = htons(port),
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK),
	};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int result;

	if (fd < 0)
		return -1;
	result = connect(fd, (const struct sockaddr *)&address, sizeof(address));
	close(fd);
	return result;
}

static unsigned count_interfaces(bool *only_lo)
{
	struct if_nameindex *interfaces = if_nameindex();
	unsigned count = 0;

	*only_lo = true;
	if (!interfaces)
		return 0;
	for (const struct if_nameindex *at = interfaces; at->if_index != 0; at++) {
		count++;
		if (strcmp(at->if_name, "lo") != 0)
			*only_lo = false;
	}
	if_freenameindex(interfaces);
	return count;
}

static void check_empty_readonly_root(void)
{
	DIR *root = opendir("/");
	const struct dirent *entry;
	struct statvfs info;
	char cwd[64];
	int fd;

	CHILD_CHECK(root != NULL);
	while ((entry = readdir(root)) != NULL)
		CHILD_CHECK(strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0);
	closedir(root);
	CHILD_CHECK(getcwd(cwd, sizeof(cwd)) != NULL && strcmp(cwd, "/") == 0);
	fd = open("/new-file", O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	CHILD_CHECK(fd == -1 && errno == EROFS);
	CHILD_CHECK(mkdir("/new-directory", 0700) == -1 && errno == EROFS);
	CHILD_CHECK(statvfs("/", &info) == 0 && (info.f_flag & ST_RDONLY));
	CHILD_CHECK(access("/etc/passwd", F_OK) == -1 && errno == ENOENT);
	CHILD_CHECK(access("/proc/self/status", F_OK) == -1 && errno == ENOENT);
	/* ".." of the root is the root: no way out */
	CHILD_CHECK(chdir("..") == 0 && access("/tmp", F_OK) == -1);
}

static void isolate_body(void *arg)
{
	struct isolation_fixture *fixture = arg;
	bool only_lo;
	char byte = 'r';

	close(fixture->ready[0]);
	close(fixture->go[1]);
	/* controls: before isolation the host's network and IPC are visible */
	CHILD_CHECK(connect_to_listener(fixture->listener_port) == 0);
	CHILD_CHECK(shmget(fixture->shm_key, 0, 0) >= 0);

	CHILD_CHECK(privileges_isolate_muxer() == 0);
	CHILD_CHECK(write(fixture->ready[1], &byte, 1) == 1);
	CHILD_CHECK(read(fixture->go[0], &byte, 1) == 1 && byte == 'g');

	check_empty_readonly_root();
	/* network namespace: only a (down) loopback, host listener unreachable */
	CHILD_CHECK(count_interfaces(&only_lo) == 1 && only_lo);
	CHILD_CHECK(connect_to_listener(fixture->listener_port) == -1);
	/* IPC namespace: the host's SysV segment does not exist here */
	CHILD_CHECK(shmget(fixture->shm_key, 0, 0) == -1 && errno == ENOENT);
}

static int open_tcp_listener(uint16_t *port)
{
	struct sockaddr_in address = {
		.sin_family = AF_INET,
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK),
	};
	socklen_t length = sizeof(address);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	if (bind(fd, (const struct sockaddr *)&address, sizeof(address)) != 0 ||
	    listen(fd, 4) != 0 ||
	    getsockname(fd, (struct sockaddr *)&address, &length) != 0) {
		close(fd);
		return -1;
	}
	*port = ntohs(address.sin_port);
	return fd;
}

/* Does /proc/PID/ns/NAME differ from ours? */
static bool namespace_differs(pid_t pid, const char *name)
{
	char path[64];
	struct stat theirs, ours;

	snprintf(path, sizeof(path), "/proc/%d/ns/%s", (int)pid, name);
	if (stat(path, &theirs) != 0)
		return false;
	snprintf(path, sizeof(path), "/proc/self/ns/%s", name);
	if (stat(path, &ours) != 0)
		return false;
	return theirs.st_ino != ours.st_ino || theirs.st_dev != ours.st_dev;
}

/* The child's mount table is exactly one read-only tmpfs on "/". */
static bool mount_table_is_empty_root(pid_t pid)
{
	char path[64], line[1024], mount_point[256], options[256];
	char filesystem[64], source[64];
	FILE *table;
	unsigned lines = 0;
	bool good = false;

	snprintf(path, sizeof(path), "/proc/%d/mountinfo", (int)pid);
	table = fopen(path, "re");
	if (!table)
		return false;
	while (fgets(line, sizeof(line), table)) {
		const char *separator = strstr(line, " - ");
		lines++;
		if (!separator ||
		    sscanf(line, "%*s %*s %*s %*s %255s %255s", mount_point, options) != 2 ||
		    sscanf(separator, " - %63s %63s", filesystem, source) != 2)
			continue;
		good = strcmp(mount_point, "/") == 0 && strncmp(options, "ro,", 3) == 0 &&
		       strcmp(filesystem, "tmpfs") == 0 &&
		       strcmp(source, "vsockmux-empty") == 0;
	}
	fclose(table);
	if (lines != 1)
		fprintf(stderr, "child mount table has %u entries\n", lines);
	return good && lines == 1;
}

static void test_isolate_muxer(void **state)
{
	struct isolation_fixture fixture;
	struct child child;
	int listener, shm_id, status;
	bool mnt_new = false, net_new = false, ipc_new = false, root_empty = false;
	char byte = 0;
	(void)state;

	listener = open_tcp_listener(&fixture.listener_port);
	assert_true(listener >= 0);
	fixture.shm_key = (key_t)(0x56530000 ^ getpid());
	shm_id = shmget(fixture.shm_key, 4096, IPC_CREAT | IPC_EXCL | 0600);
	assert_true(shm_id >= 0);
	assert_int_equal(pipe(fixture.ready), 0);
	assert_int_equal(pipe(fixture.go), 0);

	status = child_start(&child, isolate_body, &fixture);
	close(fixture.ready[1]);
	close(fixture.go[0]);
	if (status == 0 && read(fixture.ready[0], &byte, 1) == 1) {
		/* the child waits: inspect it from outside */
		mnt_new = namespace_differs(child.pid, "mnt");
		net_new = namespace_differs(child.pid, "net");
		ipc_new = namespace_differs(child.pid, "ipc");
		root_empty = mount_table_is_empty_root(child.pid);
		byte = 'g';
		if (write(fixture.go[1], &byte, 1) != 1)
			byte = 0;
	}
	close(fixture.ready[0]);
	close(fixture.go[1]);
	if (status == 0)
		status = child_finish(&child, NULL, 0);
	shmctl(shm_id, IPC_RMID, NULL);
	close(listener);

	assert_true(child_succeeded(status));
	assert_true(mnt_new);
	assert_true(net_new);
	assert_true(ipc_new);
	assert_true(root_empty);
}

/* ---- the muxer's whole sequence: isolate, limit, drop ------------------- */

static void muxer_sequence_body(void *arg)
{
	struct privilege_plan plan;
	struct rlimit limit;
	const rlim_t expected_files = TEST_MAX_CONNECTIONS + PRIVILEGES_NOFILE_RESERVE;
	char file_template[] = "/tmp/vsockmux-fsize-XXXXXX";
	int regular_file;
	pid_t forked;
	(void)arg;

	plan_nobody(&plan);
	/* opened while we still can: a regular file for the FSIZE check */
	regular_file = mkstemp(file_template);
	CHILD_CHECK(regular_file >= 0);
	unlink(file_template);

	CHILD_CHECK(privileges_isolate_muxer() == 0);
	CHILD_CHECK(privileges_limit_resources(true, TEST_MAX_CONNECTIONS) == 0);
	CHILD_CHECK(privileges_drop(&plan, SIGKILL, getppid()) == 0);

	CHILD_CHECK(getrlimit(RLIMIT_NOFILE, &limit) == 0);
	CHILD_CHECK(limit.rlim_cur == expected_files && limit.rlim_max == expected_files);
	CHILD_CHECK(fcntl(STDIN_FILENO, F_DUPFD, (int)expected_files) == -1 && errno == EINVAL);
	CHILD_CHECK(getrlimit(RLIMIT_NPROC, &limit) == 0);
	CHILD_CHECK(limit.rlim_cur == 0 && limit.rlim_max == 0);
	CHILD_CHECK(getrlimit(RLIMIT_FSIZE, &limit) == 0);
	CHILD_CHECK(limit.rlim_cur == 0 && limit.rlim_max == 0);

	/* enforced: no fork as nobody, no growing a file */
	forked = fork();
	if (forked == 0)
		_exit(0);
	CHILD_CHECK(forked == -1 && errno == EAGAIN);
	CHILD_CHECK(signal(SIGXFSZ, SIG_IGN) != SIG_ERR);
	CHILD_CHECK(write(regular_file, "x", 1) == -1 && errno == EFBIG);
	close(regular_file);

	/* credentials as for any drop (no /proc here: ask the kernel) */
	cap_t capabilities = cap_get_proc();
	cap_t empty = cap_init();
	CHILD_CHECK(capabilities && empty && cap_compare(capabilities, empty) == 0);
	cap_free(capabilities);
	cap_free(empty);
	CHILD_CHECK(cap_get_bound(CAP_SYS_ADMIN) == 0);
	CHILD_CHECK(prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1);
	CHILD_CHECK(getuid() == nobody_uid && getgid() == nobody_gid);
	CHILD_CHECK(setuid(0) == -1);
	check_empty_readonly_root();
}

static void test_muxer_sequence(void **state)
{
	(void)state;
	assert_true(child_succeeded(child_run(muxer_sequence_body, NULL, NULL, 0)));
}

/* stderr a regular file: RLIMIT_FSIZE 0 would kill us on the next log line. */
static void fsize_skipped_body(void *arg)
{
	char file_template[] = "/tmp/vsockmux-stderr-XXXXXX";
	char text[512];
	struct rlimit before, after;
	int log_file;
	ssize_t got;
	(void)arg;

	child_report_fd = dup(STDERR_FILENO);
	CHILD_CHECK(child_report_fd >= 0);
	log_file = mkstemp(file_template);
	CHILD_CHECK(log_file >= 0);
	unlink(file_template);
	CHILD_CHECK(dup2(log_file, STDERR_FILENO) == STDERR_FILENO);
	CHILD_CHECK(getrlimit(RLIMIT_FSIZE, &before) == 0);

	CHILD_CHECK(privileges_limit_resources(true, TEST_MAX_CONNECTIONS) == 0);
	CHILD_CHECK(getrlimit(RLIMIT_FSIZE, &after) == 0);
	CHILD_CHECK(after.rlim_cur == before.rlim_cur && after.rlim_max == before.rlim_max);
	fprintf(stderr, "still alive\n");
	fflush(stderr);

	got = pread(log_file, text, sizeof(text) - 1, 0);
	CHILD_CHECK(got > 0);
	text[got] = '\0';
	CHILD_CHECK(count_occurrences(text, "RLIMIT_FSIZE") == 1);
	CHILD_CHECK(strstr(text, "still alive") != NULL);
}

static void test_fsize_skipped_for_regular_stderr(void **state)
{
	(void)state;
	assert_true(child_succeeded(child_run(fsize_skipped_body, NULL, NULL, 0)));
}

/* Exit codes of one group, and of a whole run. */
#define GROUP_PASSED 0
#define GROUP_FAILED 1

static int run_drop_group(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plan_unknown_user_fails),
		cmocka_unit_test(test_plan_refuses_root),
		cmocka_unit_test(test_plan_default_user),
		cmocka_unit_test(test_drop_to_nobody),
		cmocka_unit_test(test_broker_drop),
		cmocka_unit_test(test_pdeathsig_fires),
		cmocka_unit_test(test_drop_fails_when_parent_gone),
		cmocka_unit_test(test_fsize_skipped_for_regular_stderr),
	};

	return cmocka_run_group_tests_name("privileges_root_drop", tests, NULL, NULL) == 0
		       ? GROUP_PASSED : GROUP_FAILED;
}

/* GROUP_PASSED, GROUP_FAILED or SKIP_EXIT_CODE (no namespaces here). */
static int run_namespace_group(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_isolate_muxer),
		cmocka_unit_test(test_muxer_sequence),
	};

	switch (probe_namespaces()) {
	case NAMESPACES_USABLE:
		break;
	case NAMESPACES_UNAVAILABLE:
		return SKIP_EXIT_CODE;
	case NAMESPACES_BROKEN:
		fprintf(stderr, "FAIL: the namespace probe failed unexpectedly\n");
		return GROUP_FAILED;
	}
	return cmocka_run_group_tests_name("privileges_root_namespaces", tests, NULL,
					   NULL) == 0 ? GROUP_PASSED : GROUP_FAILED;
}

int main(int argc, char **argv)
{
	const char *group = argc > 1 ? argv[1] : NULL;
	const struct passwd *nobody;
	int drop, namespaces;

	if (argc > 2 || (group && strcmp(group, "drop") != 0 &&
			 strcmp(group, "namespaces") != 0)) {
		fprintf(stderr, "usage: %s [drop|namespaces]\n", argv[0]);
		return 2;
	}
	if (geteuid() != 0) {
		printf("SKIP: test_privileges_root needs root (it drops to \"nobody\" "
		       "and creates namespaces in forked children)\n");
		return SKIP_EXIT_CODE;
	}
	nobody = getpwnam("nobody");
	if (!nobody) {
		printf("SKIP: no user \"nobody\" on this machine\n");
		return SKIP_EXIT_CODE;
	}
	nobody_uid = nobody->pw_uid;
	nobody_gid = nobody->pw_gid;
	if (group && strcmp(group, "drop") == 0)
		return run_drop_group();
	if (group)
		return run_namespace_group();
	drop = run_drop_group();
	namespaces = run_namespace_group();
	if (drop == GROUP_FAILED || namespaces == GROUP_FAILED)
		return GROUP_FAILED;
	return namespaces;
}
