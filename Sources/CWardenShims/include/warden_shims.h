#ifndef WARDEN_SHIMS_H
#define WARDEN_SHIMS_H

#include <sys/types.h>

/// pidfd_open(2): a file descriptor that becomes readable when the process exits; -1 with errno when unsupported.
int warden_pidfd_open(pid_t pid);

/// prctl(PR_SET_CHILD_SUBREAPER): orphans of our descendants are reparented to us, so we reap them.
int warden_set_child_subreaper(void);

/// CPUs this process may run on (sched_getaffinity), so `taskset -c 0` means one event loop; 0 on error.
int warden_usable_cpu_count(void);

/// Starts a program in its own session (setsid), stdin from `input_fd` (or /dev/null when -1), stdout and stderr to `output_fd`
/// (or /dev/null when -1), with the given environment; drops to gid/uid when `set_ids` is non-zero.
/// Only async-signal-safe calls happen between fork and exec. Returns 0 and the pid, or an errno value.
int warden_spawn(const char *path, char *const argv[], char *const envp[], int input_fd, int output_fd,
                 uid_t uid, gid_t gid, int set_ids, const char *directory, pid_t *pid_out);

/// Drops to `uid`/`gid` with the user's supplementary groups; 0 on success, else an errno value.
/// Afterwards regaining root must fail, or it is an error (EPERM expected).
int warden_drop_privileges(const char *user, uid_t uid, gid_t gid);

/// Double fork and setsid: the caller continues as a daemon detached from its terminal. Returns 0 in
/// the daemon; the original process exits. Must run before any other thread exists.
int warden_daemonize(void);

#endif

/// pipe2(2) with O_CLOEXEC, and O_NONBLOCK on both ends when `nonblocking` is non-zero.
int warden_pipe(int fds[2], int nonblocking);

/// malloc_trim(3): returns the free pages of every malloc arena to the kernel.
void warden_release_free_memory(void);

/// Names the calling thread (at most 15 bytes), for ps and gdb.
void warden_set_thread_name(const char *name);

/// crypt_r(3): hashes `key` with the salt/method of `setting` (DES, $1$, $5$, $6$) into `out`.
/// Returns 0 on success, -1 when the method is unsupported.
int warden_crypt(const char *key, const char *setting, char *out, int out_size);
