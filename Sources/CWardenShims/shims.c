#define _GNU_SOURCE
#include "warden_shims.h"

#include <errno.h>
#include <sched.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

int warden_pidfd_open(pid_t pid) {
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

int warden_set_child_subreaper(void) {
    return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
}

int warden_usable_cpu_count(void) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) != 0) return 0;
    return CPU_COUNT(&set);
}

int warden_spawn(const char *path, char *const argv[], char *const envp[], int input_fd, int output_fd,
                 uid_t uid, gid_t gid, int set_ids, const char *directory, pid_t *pid_out) {
    // A pipe with CLOEXEC reports exec failure (its errno) back to the parent.
    int status_pipe[2];
    if (pipe2(status_pipe, O_CLOEXEC) != 0) return errno;
    pid_t pid = fork();
    if (pid < 0) {
        int saved = errno;
        close(status_pipe[0]);
        close(status_pipe[1]);
        return saved;
    }
    if (pid == 0) {
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        for (int sig = 1; sig < NSIG; sig++) signal(sig, SIG_DFL);
        setsid();
        int null_fd = open("/dev/null", O_RDWR);
        if (input_fd >= 0) {
            dup2(input_fd, 0);
        } else if (null_fd >= 0) {
            dup2(null_fd, 0);
        }
        int out = output_fd >= 0 ? output_fd : null_fd;
        if (out >= 0) {
            dup2(out, 1);
            dup2(out, 2);
        }
        if (directory != NULL && chdir(directory) != 0) {
            int e = errno;
            (void)!write(status_pipe[1], &e, sizeof e);
            _exit(127);
        }
        if (set_ids) {
            if (setgroups(0, NULL) != 0 || setgid(gid) != 0 || setuid(uid) != 0) {
                int e = errno;
                (void)!write(status_pipe[1], &e, sizeof e);
                _exit(127);
            }
        }
        // Close every other descriptor so a daemon started here holds none of warden's sockets.
        for (int fd = 3; fd < 1024; fd++) {
            if (fd != status_pipe[1]) close(fd);
        }
        execve(path, argv, envp);
        int e = errno;
        (void)!write(status_pipe[1], &e, sizeof e);
        _exit(127);
    }
    close(status_pipe[1]);
    int child_errno = 0;
    ssize_t n;
    do {
        n = read(status_pipe[0], &child_errno, sizeof child_errno);
    } while (n < 0 && errno == EINTR);
    close(status_pipe[0]);
    *pid_out = pid;
    if (n == sizeof child_errno) {
        // exec failed: the child already exited with 127; the caller's reaper collects it.
        return child_errno;
    }
    return 0;
}

int warden_daemonize(void) {
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid > 0) _exit(0);
    if (setsid() < 0) return -1;
    pid = fork();
    if (pid < 0) return -1;
    if (pid > 0) _exit(0);
    if (chdir("/") != 0) return -1;
    umask(027);
    int null_fd = open("/dev/null", O_RDWR);
    if (null_fd >= 0) {
        dup2(null_fd, 0);
        dup2(null_fd, 1);
        dup2(null_fd, 2);
        if (null_fd > 2) close(null_fd);
    }
    // Descriptors inherited from the caller (a pipe it reads to its end, a socket) would keep it
    // waiting as long as the daemon lives.
    if (close_range(3, ~0U, 0) != 0) {
        long highest = sysconf(_SC_OPEN_MAX);
        for (long fd = 3; fd < (highest > 0 ? highest : 1024); fd++) close((int)fd);
    }
    return 0;
}

int warden_pipe(int fds[2], int nonblocking) {
    return pipe2(fds, O_CLOEXEC | (nonblocking ? O_NONBLOCK : 0));
}

#include <malloc.h>
void warden_release_free_memory(void) {
    malloc_trim(0);
}

#include <pthread.h>
void warden_set_thread_name(const char *name) {
    char short_name[16];
    strncpy(short_name, name, 15);
    short_name[15] = 0;
    pthread_setname_np(pthread_self(), short_name);
}

#include <crypt.h>
int warden_crypt(const char *key, const char *setting, char *out, int out_size) {
    struct crypt_data data;
    memset(&data, 0, sizeof data);
    char *result = crypt_r(key, setting, &data);
    if (result == NULL || result[0] == '*') return -1;
    strncpy(out, result, (size_t)out_size - 1);
    out[out_size - 1] = 0;
    return 0;
}

int warden_drop_privileges(const char *user, uid_t uid, gid_t gid) {
    if (initgroups(user, gid) != 0) return errno;
    if (setgid(gid) != 0) return errno;
    if (setuid(uid) != 0) return errno;
    if (uid != 0 && setuid(0) == 0) return EPERM;
    return 0;
}
