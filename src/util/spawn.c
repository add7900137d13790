#include "util/spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

static void close_pair(int fds[2])
{
    int e = errno;
    if (fds[0] >= 0)
        close(fds[0]);
    if (fds[1] >= 0)
        close(fds[1]);
    errno = e;
}

pid_t util_spawn(char *const argv[], const util_spawn_cfg *cfg, int *out, int *err)
{
    int fds[2], efds[2] = {-1, -1};
    if (pipe2(fds, O_CLOEXEC) < 0)
        return -1;
    if (err != NULL && pipe2(efds, O_CLOEXEC) < 0) {
        close_pair(fds);
        return -1;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        close_pair(fds);
        close_pair(efds);
        return -1;
    }
    if (pid == 0) {
        /* Between fork and exec: async-signal-safe calls only. */
        prctl(PR_SET_PDEATHSIG, cfg->deathsig);
        if (getppid() != parent)
            _exit(127); /* the parent died before the line above took hold */
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        dup2(fds[1], STDOUT_FILENO);
        if (err != NULL) {
            dup2(efds[1], STDERR_FILENO);
        } else if (cfg->stderr_to_pipe) {
            dup2(fds[1], STDERR_FILENO);
        } else if (cfg->stderr_path != NULL) {
            int lfd = open(cfg->stderr_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
            if (lfd >= 0)
                dup2(lfd, STDERR_FILENO);
        }
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0)
            dup2(devnull, STDIN_FILENO);
        for (int i = 0; i < UTIL_SPAWN_PASS_MAX; i++) /* this copy only: the parent's */
            if (cfg->pass_fd[i] > STDERR_FILENO)      /* stays CLOEXEC */
                fcntl(cfg->pass_fd[i], F_SETFD, 0);
        execv(argv[0], argv);
        fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(fds[1]);
    *out = fds[0];
    if (err != NULL) {
        close(efds[1]);
        *err = efds[0];
    }
    return pid;
}
