/*
 * privileges.c - user switch, capability drop, process hardening, resource
 * limits and the muxer's namespaces (see privileges.h for the contract).
 *
 * Order matters and is fixed here: the bounding set can only be emptied
 * while CAP_SETPCAP is still ours (before setresuid); PR_SET_DUMPABLE and
 * PR_SET_PDEATHSIG are reset by the kernel on a credential change, so they
 * come after it. Everything is verified after it is done.
 *
 * Call these while the process is single-threaded: capabilities are a
 * per-thread attribute and libcap changes only the calling thread.
 */
#include "privileges.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "vsockmux/log.h"

/* Fallback when the default dedicated user does not exist. */
#define FALLBACK_USER "nobody"

/* Where the muxer's empty tmpfs is mounted in its own mount namespace
 * before it becomes the root; the first existing directory is used. The
 * mount is invisible to the host (the namespace is private). */
static const char *const empty_root_candidates[] = {
	"/tmp", "/mnt", "/proc", "/dev",
};

/* One inode (the root directory itself) and one page: nothing fits. */
#define EMPTY_ROOT_OPTIONS "size=4k,nr_inodes=1,mode=0555"
#define EMPTY_ROOT_FLAGS (MS_NOSUID | MS_NODEV | MS_NOEXEC)

/* ---- plan --------------------------------------------------------------- */

/*
 * Look a user up by name. Returns 0 and fills uid/gid, 1 when there is no
 * such user, -1 on a lookup error (logged).
 */
static int lookup_user(const char *name, uid_t *uid, gid_t *gid)
{
	struct passwd entry, *found = NULL;
	long suggested = sysconf(_SC_GETPW_R_SIZE_MAX);
	size_t buffer_size = suggested > 0 ? (size_t)suggested : 16384;
	char *buffer = NULL;
	int result = -1;
	int error;

	for (;;) {
		char *grown = realloc(buffer, buffer_size);
		if (!grown) {
			log_error("user %s: out of memory for the lookup", name);
			goto out;
		}
		buffer = grown;
		error = getpwnam_r(name, &entry, buffer, buffer_size, &found);
		if (error != ERANGE || buffer_size >= (1u << 20))
			break;
		buffer_size *= 2;
	}
	if (found) {
		*uid = found->pw_uid;
		*gid = found->pw_gid;
		result = 0;
	} else if (error == 0 || error == ENOENT || error == ESRCH ||
		   error == EBADF || error == EPERM) {
		/* "not found" comes back as any of these (getpwnam_r(3)) */
		result = 1;
	} else {
		log_error("user %s: lookup failed: %s", name, strerror(error));
	}
out:
	free(buffer);
	return result;
}

/* The user's name for log lines, or "uid N" when it has none. */
static void name_of_uid(uid_t uid, char *name, size_t name_size)
{
	struct passwd entry, *found = NULL;
	const size_t buffer_size = 16384;
	char *buffer = malloc(buffer_size);

	if (buffer && getpwuid_r(uid, &entry, buffer, buffer_size, &found) == 0 &&
	    found && strlen(found->pw_name) < name_size)
		snprintf(name, name_size, "%s", found->pw_name);
	else
		snprintf(name, name_size, "uid %u", (unsigned)uid);
	free(buffer);
}

static int copy_user_name(struct privilege_plan *plan, const char *name)
{
	size_t length = strlen(name);

	if (length >= sizeof(plan->user_name)) {
		log_error("user name too long (%zu bytes, at most %zu)", length,
			  sizeof(plan->user_name) - 1);
		return -1;
	}
	memcpy(plan->user_name, name, length + 1);
	return 0;
}

/* The process's real, effective and saved user and group ids. */
struct process_ids {
	uid_t real, effective, saved;
	gid_t group_real, group_effective, group_saved;
};

static int read_process_ids(struct process_ids *ids)
{
	if (getresuid(&ids->real, &ids->effective, &ids->saved) != 0 ||
	    getresgid(&ids->group_real, &ids->group_effective, &ids->group_saved) != 0) {
		log_error("getresuid/getresgid: %s", strerror(errno));
		return -1;
	}
	return 0;
}

/* Started unprivileged: we stay who we are. An explicit --user must be us. */
static int plan_unprivileged(const char *user_name, struct privilege_plan *plan)
{
	struct process_ids ids;

	if (read_process_ids(&ids) < 0)
		return -1;
	if (ids.real == 0 || ids.saved == 0) {
		log_error("started with a real or saved uid of 0 but effective uid %u: "
			  "start as root or as an ordinary user", (unsigned)ids.effective);
		return -1;
	}
	plan->change_user = false;
	plan->uid = ids.effective;
	plan->gid = ids.group_effective;
	if (user_name) {
		uid_t uid;
		gid_t gid;
		int found = lookup_user(user_name, &uid, &gid);
		if (found < 0)
			return -1;
		if (found > 0 || uid != ids.effective) {
			log_error("--user %s: not started as root, cannot switch from uid %u",
				  user_name, (unsigned)ids.effective);
			return -1;
		}
		return copy_user_name(plan, user_name);
	}
	name_of_uid(ids.effective, plan->user_name, sizeof(plan->user_name));
	return 0;
}

int privileges_plan(const char *user_name, struct privilege_plan *plan)
{
	const char *name = user_name ? user_name : PRIVILEGES_DEFAULT_USER;
	int found;

	memset(plan, 0, sizeof(*plan));
	if (geteuid() != 0)
		return plan_unprivileged(user_name, plan);

	found = lookup_user(name, &plan->uid, &plan->gid);
	if (found > 0 && !user_name) {
		name = FALLBACK_USER;
		found = lookup_user(name, &plan->uid, &plan->gid);
		if (found == 0)
			log_warn("no user %s: running as %s; guest connects reach only host "
				 "listeners that %s may connect to (mode 0666), else they are "
				 "refused as permission_denied; create user %s or pass --user",
				 PRIVILEGES_DEFAULT_USER, FALLBACK_USER, FALLBACK_USER,
				 PRIVILEGES_DEFAULT_USER);
	}
	if (found < 0)
		return -1;
	if (found > 0) {
		if (user_name)
			log_error("--user %s: no such user", name);
		else
			log_error("neither user %s nor user %s exists: use --user",
				  PRIVILEGES_DEFAULT_USER, FALLBACK_USER);
		return -1;
	}
	if (plan->uid == 0 || plan->gid == 0) {
		log_error("user %s has uid %u gid %u: refusing to keep root",
			  name, (unsigned)plan->uid, (unsigned)plan->gid);
		return -1;
	}
	plan->change_user = true;
	return copy_user_name(plan, name);
}

/* ---- muxer namespaces ----------------------------------------------------- */

static const char *find_empty_root_mount_point(void)
{
	for (size_t i = 0; i < sizeof(empty_root_candidates) / sizeof(empty_root_candidates[0]); i++) {
		struct stat info;
		if (lstat(empty_root_candidates[i], &info) == 0 && S_ISDIR(info.st_mode))
			return empty_root_candidates[i];
	}
	return NULL;
}

/* Make the current directory (an empty tmpfs) our root and forget the old
 * one: pivot_root when the old root is a mount point, else chroot. */
static int enter_current_directory_as_root(void)
{
	if (syscall(SYS_pivot_root, ".", ".") == 0) {
		/* the old root is now stacked on "."; detach it */
		if (umount2(".", MNT_DETACH) != 0) {
			log_error("muxer: umount of the old root: %s", strerror(errno));
			return -1;
		}
	} else if (errno == EINVAL) {
		/* e.g. our root is not a mount point (started in a chroot) */
		log_debug("muxer: pivot_root: %s; using chroot", strerror(errno));
		if (chroot(".") != 0) {
			log_error("muxer: chroot: %s", strerror(errno));
			return -1;
		}
	} else {
		log_error("muxer: pivot_root: %s", strerror(errno));
		return -1;
	}
	if (chdir("/") != 0) {
		log_error("muxer: chdir /: %s", strerror(errno));
		return -1;
	}
	return 0;
}

int privileges_isolate_muxer(void)
{
	const char *mount_point;
	struct statvfs root_info;

	if (unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC) != 0) {
		/* EPERM: not root; EINVAL/ENOSPC: namespaces not built in or
		 * disabled by the administrator (user.max_*_namespaces) */
		if (errno == EPERM || errno == EINVAL || errno == ENOSPC) {
			log_warn("muxer: not isolated (no namespaces: %s): running with "
				 "seccomp and no-new-privs only", strerror(errno));
			return 1;
		}
		log_error("muxer: unshare: %s", strerror(errno));
		return -1;
	}
	/* Nothing we mount may propagate back to the host. */
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) {
		/* EINVAL: "/" is not a mount point (we run inside a chroot).
		 * Mounting anything could then propagate to the host, so keep
		 * the new network and IPC namespaces and stop here. */
		if (errno == EINVAL) {
			log_warn("muxer: not fully isolated (root is not a mount point, "
				 "chroot?): own network and IPC namespaces, no empty root; "
				 "seccomp and no-new-privs apply");
			return 1;
		}
		log_error("muxer: making mounts private: %s", strerror(errno));
		return -1;
	}
	mount_point = find_empty_root_mount_point();
	if (!mount_point) {
		log_error("muxer: no directory to mount the empty root on");
		return -1;
	}
	if (mount("vsockmux-empty", mount_point, "tmpfs", EMPTY_ROOT_FLAGS,
		  EMPTY_ROOT_OPTIONS) != 0) {
		log_error("muxer: mounting tmpfs on %s: %s", mount_point, strerror(errno));
		return -1;
	}
	if (chdir(mount_point) != 0) {
		log_error("muxer: chdir %s: %s", mount_point, strerror(errno));
		return -1;
	}
	if (enter_current_directory_as_root() != 0)
		return -1;
	if (mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | EMPTY_ROOT_FLAGS,
		  NULL) != 0) {
		log_error("muxer: remounting the empty root read-only: %s", strerror(errno));
		return -1;
	}
	if (statvfs("/", &root_info) != 0 || !(root_info.f_flag & ST_RDONLY)) {
		log_error("muxer: the empty root is not read-only");
		return -1;
	}
	log_info("muxer: isolated: own mount, network and IPC namespaces, empty read-only root");
	return 0;
}

/* ---- capabilities ------------------------------------------------------- */

/* Is cap in the given set of the calling thread? false on error. */
static bool have_capability(cap_value_t cap, cap_flag_t set)
{
	cap_t current = cap_get_proc();
	cap_flag_value_t value = CAP_CLEAR;

	if (!current)
		return false;
	if (cap_get_flag(current, cap, set, &value) != 0)
		value = CAP_CLEAR;
	cap_free(current);
	return value == CAP_SET;
}

/* Raise CAP_SETPCAP into the effective set if it is permitted. */
static int raise_setpcap(void)
{
	const cap_value_t wanted[] = { CAP_SETPCAP };
	cap_t current = cap_get_proc();
	int result = -1;

	if (!current)
		goto out;
	if (cap_set_flag(current, CAP_EFFECTIVE, 1, wanted, CAP_SET) != 0 ||
	    cap_set_proc(current) != 0)
		goto out;
	result = 0;
out:
	if (result != 0)
		log_error("raising CAP_SETPCAP: %s", strerror(errno));
	cap_free(current);
	return result;
}

/*
 * Empty the bounding set while we may (CAP_SETPCAP). Without CAP_SETPCAP
 * (started unprivileged) it cannot be changed and no-new-privs makes it
 * moot: *dropped tells the caller which case it was.
 */
static int drop_bounding_set(bool *dropped)
{
	cap_value_t last = (cap_value_t)cap_max_bits();

	*dropped = false;
	if (!have_capability(CAP_SETPCAP, CAP_PERMITTED)) {
		/* expected when started unprivileged, worth a word as root */
		log_message(geteuid() == 0 ? LOG_LEVEL_WARN : LOG_LEVEL_DEBUG,
			    "capability bounding set kept (no CAP_SETPCAP); "
			    "no-new-privs makes it moot");
		return 0;
	}
	if (!have_capability(CAP_SETPCAP, CAP_EFFECTIVE) && raise_setpcap() != 0)
		return -1;
	for (cap_value_t cap = 0; cap < last; cap++) {
		if (cap_drop_bound(cap) != 0) {
			log_error("dropping capability %d from the bounding set: %s",
				  (int)cap, strerror(errno));
			return -1;
		}
	}
	*dropped = true;
	return 0;
}

/* Clear effective, permitted, inheritable and ambient. */
static int clear_capabilities(void)
{
	cap_t empty = cap_init();
	int result = -1;

	if (!empty) {
		log_error("cap_init: %s", strerror(errno));
		return -1;
	}
	if (cap_set_proc(empty) != 0) {
		log_error("clearing capabilities: %s", strerror(errno));
		goto out;
	}
	/* EINVAL: kernel older than 4.3, no ambient set to clear */
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 &&
	    errno != EINVAL) {
		log_error("clearing ambient capabilities: %s", strerror(errno));
		goto out;
	}
	result = 0;
out:
	cap_free(empty);
	return result;
}

/* Every set empty (bounding only if we dropped it). */
static int verify_no_capabilities(bool bounding_dropped)
{
	cap_t current = cap_get_proc();
	cap_t empty = cap_init();
	cap_value_t last = (cap_value_t)cap_max_bits();
	int result = -1;

	if (!current || !empty) {
		log_error("reading capabilities back: %s", strerror(errno));
		goto out;
	}
	if (cap_compare(current, empty) != 0) {
		log_error("capabilities still held after clearing them");
		goto out;
	}
	for (cap_value_t cap = 0; cap < last; cap++) {
		if (cap_get_ambient(cap) > 0 ||
		    (bounding_dropped && cap_get_bound(cap) != 0)) {
			log_error("capability %d still in the ambient or bounding set",
				  (int)cap);
			goto out;
		}
	}
	result = 0;
out:
	cap_free(current);
	cap_free(empty);
	return result;
}

/* ---- user ---------------------------------------------------------------- */

static int switch_user(const struct privilege_plan *plan)
{
	/* setresuid from root clears the capabilities unless keep-caps */
	if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) != 0) {
		log_error("PR_SET_KEEPCAPS: %s", strerror(errno));
		return -1;
	}
	if (plan->change_user && setgroups(1, &plan->gid) != 0) {
		log_error("setgroups: %s", strerror(errno));
		return -1;
	}
	/* Unprivileged this only collapses real/saved onto the effective ids. */
	if (setresgid(plan->gid, plan->gid, plan->gid) != 0) {
		log_error("setresgid %u: %s", (unsigned)plan->gid, strerror(errno));
		return -1;
	}
	if (setresuid(plan->uid, plan->uid, plan->uid) != 0) {
		log_error("setresuid %u: %s", (unsigned)plan->uid, strerror(errno));
		return -1;
	}
	return 0;
}

static int verify_user(const struct privilege_plan *plan)
{
	struct process_ids ids;

	if (read_process_ids(&ids) < 0)
		return -1;
	if (ids.real != plan->uid || ids.effective != plan->uid || ids.saved != plan->uid ||
	    ids.group_real != plan->gid || ids.group_effective != plan->gid ||
	    ids.group_saved != plan->gid) {
		log_error("user switch incomplete: uids %u/%u/%u gids %u/%u/%u",
			  (unsigned)ids.real, (unsigned)ids.effective, (unsigned)ids.saved,
			  (unsigned)ids.group_real, (unsigned)ids.group_effective,
			  (unsigned)ids.group_saved);
		return -1;
	}
	if (plan->change_user) {
		gid_t groups[2];
		int count = getgroups(2, groups);
		if (count != 1 || groups[0] != plan->gid) {
			log_error("supplementary groups not reduced to gid %u",
				  (unsigned)plan->gid);
			return -1;
		}
	}
	if (setuid(0) == 0) {
		log_error("setuid(0) succeeded after dropping privileges");
		return -1;
	}
	return 0;
}

/* ---- drop ---------------------------------------------------------------- */

int privileges_drop(const struct privilege_plan *plan, int death_signal,
		    pid_t parent_pid)
{
	bool bounding_dropped;
	int value;

	if (drop_bounding_set(&bounding_dropped) != 0)
		return -1;
	if (switch_user(plan) != 0 || clear_capabilities() != 0)
		return -1;
	if (verify_user(plan) != 0 || verify_no_capabilities(bounding_dropped) != 0)
		return -1;

	/* After the credential change, which resets both. */
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0 ||
	    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
		log_error("prctl dumpable/no_new_privs: %s", strerror(errno));
		return -1;
	}
	if (prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 0 ||
	    prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1) {
		log_error("dumpable/no_new_privs did not stick");
		return -1;
	}
	if (death_signal != 0) {
		if (prctl(PR_SET_PDEATHSIG, death_signal, 0, 0, 0) != 0 ||
		    prctl(PR_GET_PDEATHSIG, &value, 0, 0, 0) != 0 ||
		    value != death_signal) {
			log_error("PR_SET_PDEATHSIG %d: %s", death_signal, strerror(errno));
			return -1;
		}
		/* The parent may have died before the signal was armed. */
		if (getppid() != parent_pid) {
			log_error("parent process %d exited", (int)parent_pid);
			return -1;
		}
	}
	log_info("running as %s (uid %u, gid %u) without capabilities%s",
		 plan->user_name, (unsigned)plan->uid, (unsigned)plan->gid,
		 plan->change_user ? "" : " (started unprivileged)");
	return 0;
}

/* ---- resource limits --------------------------------------------------- */

static int set_limit(int resource, const char *name, rlim_t value)
{
	struct rlimit limit = { .rlim_cur = value, .rlim_max = value };

	if (setrlimit(resource, &limit) != 0) {
		log_error("setrlimit %s %llu: %s", name, (unsigned long long)value,
			  strerror(errno));
		return -1;
	}
	return 0;
}

/* Both limits to max_connections + reserve; clamped to the hard limit
 * when raising it is not allowed. */
static int limit_open_files(uint32_t max_connections)
{
	rlim_t wanted = (rlim_t)max_connections + PRIVILEGES_NOFILE_RESERVE;
	struct rlimit current;
	struct rlimit limit = { .rlim_cur = wanted, .rlim_max = wanted };

	if (getrlimit(RLIMIT_NOFILE, &current) != 0) {
		log_error("getrlimit RLIMIT_NOFILE: %s", strerror(errno));
		return -1;
	}
	if (setrlimit(RLIMIT_NOFILE, &limit) == 0)
		return 0;
	if (errno == EPERM && wanted <= current.rlim_max) {
		/* Lowering the hard limit refused (valgrind does): the soft
		 * limit alone still bounds the descriptors. */
		limit.rlim_max = current.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &limit) == 0) {
			log_warn("RLIMIT_NOFILE: the hard limit could not be lowered "
				 "to %llu; soft limit set, hard limit left at %llu",
				 (unsigned long long)wanted,
				 (unsigned long long)current.rlim_max);
			return 0;
		}
	}
	if (errno != EPERM || wanted <= current.rlim_max) {
		log_error("setrlimit RLIMIT_NOFILE %llu: %s",
			  (unsigned long long)wanted, strerror(errno));
		return -1;
	}
	log_warn("max-connections %u needs %llu file descriptors, the hard limit "
		 "is %llu: connections beyond it will be refused",
		 max_connections, (unsigned long long)wanted,
		 (unsigned long long)current.rlim_max);
	return set_limit(RLIMIT_NOFILE, "RLIMIT_NOFILE", current.rlim_max);
}

/* A regular-file stdout/stderr would turn RLIMIT_FSIZE 0 into SIGXFSZ on
 * the first log line. */
static bool output_is_regular_file(void)
{
	const int descriptors[] = { STDOUT_FILENO, STDERR_FILENO };

	for (size_t i = 0; i < sizeof(descriptors) / sizeof(descriptors[0]); i++) {
		struct stat info;
		if (fstat(descriptors[i], &info) == 0 && S_ISREG(info.st_mode))
			return true;
	}
	return false;
}

int privileges_limit_resources(bool muxer, uint32_t max_connections)
{
	if (limit_open_files(max_connections) != 0)
		return -1;
	if (!muxer)
		return 0;
	/* No fork, no threads (root ignores this; the dropped user does not). */
	if (set_limit(RLIMIT_NPROC, "RLIMIT_NPROC", 0) != 0)
		return -1;
	if (output_is_regular_file()) {
		log_info("muxer: RLIMIT_FSIZE left as is: stdout/stderr is a regular file");
		return 0;
	}
	return set_limit(RLIMIT_FSIZE, "RLIMIT_FSIZE", 0);
}
