/* Hosts on one machine for tests: network namespaces on a bridge (netns.h). */
#include "netns.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "proc.h"

#define IP_MS 20000

static netns_net *current; /* what netns_destroy removes */

const char *netns_ip(void)
{
    static const char *const paths[] = {"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
        if (access(paths[i], X_OK) == 0)
            return paths[i];
    return "ip";
}

/* Runs ip with argv[1..] (argv[0] is filled here); stdout into out. */
static int run_ip(char **argv, char *out, size_t outlen, char *err, size_t errlen)
{
    char e[1024];
    argv[0] = (char *)netns_ip();
    int rc = proc_run(argv, out, outlen, e, sizeof(e), IP_MS);
    if (rc == 0)
        return 0;
    e[strcspn(e, "\n")] = '\0';
    int used = 0;
    for (int i = 1; argv[i] != NULL && used < (int)errlen; i++)
        used += snprintf(err + used, errlen - (size_t)used, "%s%s", i > 1 ? " " : "ip ",
                         argv[i]);
    if (used < (int)errlen)
        snprintf(err + used, errlen - (size_t)used, ": exit %d: %s", rc, e);
    return -1;
}

int netns_ip_run(char *err, size_t errlen, ...)
{
    char *argv[24], out[256];
    int n = 1;
    va_list ap;
    va_start(ap, errlen);
    for (char *a; n < 23 && (a = va_arg(ap, char *)) != NULL;)
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    return run_ip(argv, out, sizeof(out), err, errlen);
}

int netns_available(char *why, size_t len)
{
    char probe[64], err[512];
    if (geteuid() != 0) {
        snprintf(why, len, "network namespaces need root (euid %u)", (unsigned)geteuid());
        return 0;
    }
    if (access(netns_ip(), X_OK) != 0) {
        snprintf(why, len, "iproute2's ip is not installed");
        return 0;
    }
    snprintf(probe, sizeof(probe), "tcpopsprobe%d", (int)getpid());
    if (netns_ip_run(err, sizeof(err), "netns", "add", probe, NULL) < 0) {
        snprintf(why, len, "cannot make a network namespace: %s", err);
        return 0;
    }
    netns_ip_run(err, sizeof(err), "netns", "del", probe, NULL);
    return 1;
}

/* Kills every process in namespace ns, deletes it and /etc/netns/ns. */
static void remove_ns(const char *ns)
{
    char *argv[] = {NULL, "netns", "pids", (char *)ns, NULL};
    char out[4096], err[512], etc[300];
    if (run_ip(argv, out, sizeof(out), err, sizeof(err)) == 0) {
        for (char *save = NULL, *t = strtok_r(out, " \n", &save); t != NULL;
             t = strtok_r(NULL, " \n", &save)) {
            pid_t pid = (pid_t)atol(t);
            if (pid > 1 && pid != getpid())
                kill(pid, SIGKILL);
        }
    }
    netns_ip_run(err, sizeof(err), "netns", "del", ns, NULL);
    snprintf(etc, sizeof(etc), "/etc/netns/%s", ns);
    rm_rf(etc);
}

void netns_sweep(const char *prefix)
{
    DIR *d = opendir("/run/netns");
    struct dirent *de;
    size_t pl = strlen(prefix);
    while (d != NULL && (de = readdir(d)) != NULL) {
        if (strncmp(de->d_name, prefix, pl) != 0)
            continue;
        long pid = strtol(de->d_name + pl, NULL, 10);
        /* A live run (or ours) keeps its namespaces. */
        if (pid > 0 && (pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH))
            continue;
        remove_ns(de->d_name);
    }
    if (d != NULL)
        closedir(d);
}

void netns_destroy(void)
{
    netns_net *net = current;
    if (net == NULL)
        return;
    current = NULL;
    for (int i = net->nhosts - 1; i >= 0; i--)
        remove_ns(net->hosts[i].ns);
    remove_ns(net->bridge); /* takes the bridge's veth ends with it */
}

int netns_setup(netns_net *net, const char *prefix, char *err, size_t errlen)
{
    memset(net, 0, sizeof(*net));
    netns_sweep(prefix);
    snprintf(net->prefix, sizeof(net->prefix), "%s%d", prefix, (int)getpid());
    snprintf(net->bridge, sizeof(net->bridge), "%s%d-br", prefix, (int)getpid());
    if (current == NULL) {
        static int registered;
        if (!registered)
            atexit(netns_destroy);
        registered = 1;
    }
    current = net;
    if (netns_ip_run(err, errlen, "netns", "add", net->bridge, NULL) < 0 ||
        netns_ip_run(err, errlen, "-n", net->bridge, "link", "set", "lo", "up", NULL) < 0 ||
        netns_ip_run(err, errlen, "-n", net->bridge, "link", "add", "br0", "type", "bridge",
                     NULL) < 0 ||
        netns_ip_run(err, errlen, "-n", net->bridge, "link", "set", "br0", "up", NULL) < 0)
        return -1;
    return 0;
}

const netns_host *netns_add_host(netns_net *net, const char *role, int last, char *err,
                                 size_t errlen)
{
    if (net->nhosts == NETNS_MAX_HOSTS) {
        snprintf(err, errlen, "more than %d hosts", NETNS_MAX_HOSTS);
        return NULL;
    }
    netns_host *h = &net->hosts[net->nhosts];
    char cidr[32];
    char prefix[sizeof(net->prefix)];
    memcpy(prefix, net->prefix, sizeof(prefix));
    snprintf(h->ns, sizeof(h->ns), "%s-%s", prefix, role);
    snprintf(h->veth, sizeof(h->veth), "v%.12s", role);
    snprintf(h->ip, sizeof(h->ip), "198.18.0.%d", last);
    snprintf(cidr, sizeof(cidr), "%s/24", h->ip);
    if (netns_ip_run(err, errlen, "netns", "add", h->ns, NULL) < 0)
        return NULL;
    net->nhosts++; /* from here on netns_destroy removes it */
    const char *br = net->bridge;
    if (netns_ip_run(err, errlen, "-n", h->ns, "link", "set", "lo", "up", NULL) < 0 ||
        netns_ip_run(err, errlen, "-n", br, "link", "add", h->veth, "type", "veth", "peer",
                     "name", "eth0", "netns", h->ns, NULL) < 0 ||
        netns_ip_run(err, errlen, "-n", br, "link", "set", h->veth, "master", "br0", NULL) < 0 ||
        netns_ip_run(err, errlen, "-n", br, "link", "set", h->veth, "up", NULL) < 0 ||
        netns_ip_run(err, errlen, "-n", h->ns, "addr", "add", cidr, "dev", "eth0", NULL) < 0 ||
        netns_ip_run(err, errlen, "-n", h->ns, "link", "set", "eth0", "up", NULL) < 0)
        return NULL;
    return h;
}

int netns_link(const netns_net *net, const netns_host *h, int up, char *err, size_t errlen)
{
    return netns_ip_run(err, errlen, "-n", net->bridge, "link", "set", h->veth,
                        up ? "up" : "down", NULL);
}

int netns_write_hosts(const netns_host *h, const char *text, char *err, size_t errlen)
{
    char dir[300], path[320];
    snprintf(dir, sizeof(dir), "/etc/netns/%s", h->ns);
    snprintf(path, sizeof(path), "%s/hosts", dir);
    if ((mkdir("/etc/netns", 0755) < 0 && errno != EEXIST) ||
        (mkdir(dir, 0755) < 0 && errno != EEXIST)) {
        snprintf(err, errlen, "mkdir %s: %s", dir, strerror(errno));
        return -1;
    }
    /* O_TRUNC keeps the inode: the bind mount a running program sees is
     * of this very file. */
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    size_t n = strlen(text);
    if (fd < 0 || write(fd, text, n) != (ssize_t)n) {
        snprintf(err, errlen, "write %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    return 0;
}

int netns_enter(const netns_host *h)
{
    char path[300];
    snprintf(path, sizeof(path), "/run/netns/%s", h->ns);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = setns(fd, CLONE_NEWNET);
    close(fd);
    return rc;
}
