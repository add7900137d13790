/* The supervisor's configuration: the defaults, the INI file (values, and
 * errors that name the file and line), the APP=VALUE flag lists, which apps
 * run on this host, each service's store and advertised host, and the
 * command line each worker is started with. */
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "supervisor/config.h"

/* What every worker is given first after --listen: the master's level, and
 * logfmt, which it reads. */
#define LOG "--log-level info --log-format logfmt "

/* Writes text to a fresh temp file; path gets its name. */
static void write_ini(char *path, size_t len, const char *text)
{
    snprintf(path, len, "/tmp/tcpops-test-config-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t n = strlen(text);
    assert_int_equal(write(fd, text, n), (ssize_t)n);
    close(fd);
}

/* Loads text as an INI file over the defaults; returns sup_config_load's
 * result, with err holding its message (the temp path replaced by "FILE"). */
static int load(sup_config *c, const char *text, char *err, size_t errlen)
{
    char path[64], raw[512];
    write_ini(path, sizeof(path), text);
    sup_config_default(c);
    int rc = sup_config_load(c, path, raw, sizeof(raw));
    unlink(path);
    const char *at = strstr(raw, path);
    if (rc < 0 && at != NULL)
        snprintf(err, errlen, "%.*sFILE%s", (int)(at - raw), raw, at + strlen(path));
    else
        snprintf(err, errlen, "%s", rc < 0 ? raw : "");
    return rc;
}

static void expect_load_error(const char *text, const char *want)
{
    sup_config c;
    char err[512];
    if (load(&c, text, err, sizeof(err)) == 0)
        fail_msg("expected the error \"%s\", got success for:\n%s", want, text);
    if (strcmp(err, want) != 0)
        fail_msg("expected the error \"%s\", got \"%s\"", want, err);
}

static void test_defaults(void **state)
{
    (void)state;
    sup_config c;
    sup_config_default(&c);
    assert_string_equal(c.data_dir, "./var");
    assert_int_equal(c.drain_ms, 5000);
    assert_int_equal(c.http_fd, -1);
    assert_int_equal(c.detach, 0);
    const char *names[] = {"gateway", "people", "pets"};
    const char *listens[] = {"127.0.0.1:5001", "127.0.0.1:5002", "127.0.0.1:5003"};
    const char *binaries[] = {"tcpops-gateway", "tcpops-people", "tcpops-pets"};
    for (int a = 0; a < SUP_NAPPS; a++) {
        assert_string_equal(c.apps[a].name, names[a]);
        assert_string_equal(c.apps[a].listen, listens[a]);
        assert_string_equal(c.apps[a].binary, binaries[a]);
        assert_int_equal(c.apps[a].workers, 1);
        assert_int_equal(c.apps[a].max_memory, 0);
        assert_string_equal(c.apps[a].args, "");
        assert_int_equal(c.apps[a].run, 1);
        assert_string_equal(sup_app_db(&c, a), "");
        assert_string_equal(sup_app_advertise(&c, a), "");
        assert_int_equal(sup_app_index(names[a]), a);
    }
    assert_int_equal(sup_app_index("gatewayx"), -1);
    /* The programs are looked for beside the running binary (this test's). */
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    assert_true(n > 0);
    self[n] = '\0';
    *strrchr(self, '/') = '\0';
    assert_string_equal(c.bin_dir, self);
    /* The restart policy the master follows. */
    assert_int_equal(c.policy.restart.initial_ms, 100);
    assert_int_equal(c.policy.restart.cap_ms, 15000);
    assert_int_equal(c.policy.restart.reset_after_ms, c.policy.healthy_ms);
    assert_int_equal(c.policy.healthy_ms, 30000);
    assert_int_equal(c.policy.crashloop_after, 5);
    assert_int_equal(c.policy.ready_timeout_ms, 20000);
    assert_int_equal(c.policy.settle_ms, 1500);
    assert_int_equal(c.policy.kill_grace_ms, 1000);
}

static void test_ini_values(void **state)
{
    (void)state;
    sup_config c;
    char err[512];
    int rc = load(&c,
                  "; a comment\n"
                  "[tcpops]\n"
                  "data_dir = /srv/tcpops\n"
                  "drain_ms = 250\n"
                  "ready_timeout_ms = 1500\n"
                  "[people]\n"
                  "workers = 4\n"
                  "max_memory = 64M\n"
                  "listen = 127.0.0.1:6002\n"
                  "args = --threads 2  --sync full\n"
                  "[pets]\n"
                  "workers = 0\n"
                  "[gateway]\n"
                  "workers = 1\n"
                  "max_memory = 1G\n",
                  err, sizeof(err));
    if (rc != 0)
        fail_msg("expected the file to load, got \"%s\"", err);
    assert_string_equal(c.data_dir, "/srv/tcpops");
    assert_int_equal(c.drain_ms, 250);
    assert_int_equal(c.policy.ready_timeout_ms, 1500);
    assert_int_equal(c.apps[SUP_PEOPLE].workers, 4);
    assert_int_equal(c.apps[SUP_PEOPLE].max_memory, 64L << 20);
    assert_string_equal(c.apps[SUP_PEOPLE].listen, "127.0.0.1:6002");
    assert_string_equal(c.apps[SUP_PEOPLE].args, "--threads 2  --sync full");
    assert_int_equal(c.apps[SUP_PETS].workers, 0);
    assert_string_equal(c.apps[SUP_PETS].listen, "127.0.0.1:5003"); /* default kept */
    assert_int_equal(c.apps[SUP_GATEWAY].max_memory, 1L << 30);
}

static void test_ini_errors_name_the_line(void **state)
{
    (void)state;
    expect_load_error("[tcpops]\ndrain_ms = 100\n[people]\ncolour = blue\n",
                      "FILE line 4: unknown setting [people] colour");
    expect_load_error("[fish]\nworkers = 2\n", "FILE line 2: unknown setting [fish] workers");
    expect_load_error("[people]\nworkers = 65\n",
                      "FILE line 2: [people] workers: \"65\" is out of range: 0 to 64");
    expect_load_error("[people]\nworkers = many\n",
                      "FILE line 2: [people] workers: \"many\" is not a whole number (digits only, no unit)");
    expect_load_error("\n\n[gateway]\nworkers = 2\n",
                      "FILE line 4: [gateway] workers: \"2\": the gateway runs exactly 1");
    expect_load_error("[tcpops]\ndrain_ms = 600001\n",
                      "FILE line 2: [tcpops] drain_ms: \"600001\" is out of range: 0 to 600000");
    expect_load_error("[tcpops]\nready_timeout_ms = 99\n",
                      "FILE line 2: [tcpops] ready_timeout_ms: \"99\" is out of range: 100 to "
                      "600000");
    expect_load_error("[people]\nworkers = 2\n[pets\n", "FILE line 3: syntax error");
    expect_load_error("[people]\nworkers 2\n", "FILE line 2: syntax error");
}

static void test_ini_missing_file(void **state)
{
    (void)state;
    sup_config c;
    char err[512];
    sup_config_default(&c);
    assert_int_equal(sup_config_load(&c, "/nonexistent/tcpops.ini", err, sizeof(err)), -1);
    assert_string_equal(err, "cannot open config file /nonexistent/tcpops.ini");
}

static void test_pairs(void **state)
{
    (void)state;
    sup_config c;
    char err[512];
    sup_config_default(&c);
    assert_int_equal(sup_config_pairs(&c, "people=4,pets=2", "workers", err, sizeof(err)), 0);
    assert_int_equal(c.apps[SUP_PEOPLE].workers, 4);
    assert_int_equal(c.apps[SUP_PETS].workers, 2);
    assert_int_equal(sup_config_pairs(&c, "people=64M,gateway=1G", "max-memory", err,
                                      sizeof(err)), 0);
    assert_int_equal(c.apps[SUP_PEOPLE].max_memory, 64L << 20);
    assert_int_equal(c.apps[SUP_GATEWAY].max_memory, 1L << 30);

    assert_int_equal(sup_config_pairs(&c, "people", "workers", err, sizeof(err)), -1);
    assert_string_equal(err, "--workers: \"people\" is not APP=VALUE");
    assert_int_equal(sup_config_pairs(&c, "fish=2", "workers", err, sizeof(err)), -1);
    assert_string_equal(err, "--workers: unknown app \"fish\" (gateway, people, pets)");
    assert_int_equal(sup_config_pairs(&c, "gateway=3", "workers", err, sizeof(err)), -1);
    assert_string_equal(err, "--workers gateway: \"3\": the gateway runs exactly 1");
}

static void test_app_set_never_cuts(void **state)
{
    (void)state;
    sup_config c;
    char err[512], long_addr[600];
    sup_config_default(&c);
    memset(long_addr, 'a', sizeof(long_addr) - 1);
    long_addr[sizeof(long_addr) - 1] = '\0';
    assert_int_equal(sup_app_set(&c.apps[SUP_PETS], "listen", long_addr, err, sizeof(err)), -1);
    assert_string_equal(err, "pets listen: longer than 511 bytes");
    assert_string_equal(c.apps[SUP_PETS].listen, "127.0.0.1:5003");
}

/* argv as one string, words separated by spaces. */
static void joined(const sup_argv *av, char *out, size_t len)
{
    out[0] = '\0';
    for (int i = 0; av->argv[i] != NULL; i++)
        snprintf(out + strlen(out), len - strlen(out), "%s%s", i ? " " : "", av->argv[i]);
}

/* An empty file at dir/name with mode. */
static void touch(const char *dir, const char *name, mode_t mode)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    assert_true(fd >= 0);
    close(fd);
}

/* An installed tcpops runs the programs beside it; a tcpops alone (say in
 * /usr/local/bin, the others elsewhere on PATH) finds them on PATH, skipping
 * a copy it may not run. */
static void test_programs_beside_tcpops_then_on_path(void **state)
{
    (void)state;
    char root[] = "/tmp/tcpops-test-path-XXXXXX", beside[64], noexec[64], onpath[64],
         path[PATH_MAX], want[PATH_MAX], env[256];
    assert_non_null(mkdtemp(root));
    const char *dirs[] = {beside, noexec, onpath};
    snprintf(beside, sizeof(beside), "%s/beside", root);
    snprintf(noexec, sizeof(noexec), "%s/noexec", root);
    snprintf(onpath, sizeof(onpath), "%s/onpath", root);
    for (int i = 0; i < 3; i++)
        assert_int_equal(mkdir(dirs[i], 0700), 0);
    touch(noexec, "tcpops-people", 0600);
    touch(onpath, "tcpops-people", 0700);
    char *saved = getenv("PATH") != NULL ? strdup(getenv("PATH")) : NULL;
    snprintf(env, sizeof(env), "%s::%s", noexec, onpath);
    setenv("PATH", env, 1);

    sup_config c;
    sup_argv av;
    char err[256];
    sup_config_default(&c);
    snprintf(c.bin_dir, sizeof(c.bin_dir), "%s", beside);
    snprintf(want, sizeof(want), "%s/tcpops-people", onpath);
    assert_int_equal(sup_app_path(&c, SUP_PEOPLE, path, sizeof(path)), 0);
    assert_string_equal(path, want);
    assert_int_equal(sup_app_argv(&c, SUP_PEOPLE, &av, err, sizeof(err)), 0);
    assert_string_equal(av.argv[0], want);

    touch(beside, "tcpops-people", 0700);
    snprintf(want, sizeof(want), "%s/tcpops-people", beside);
    assert_int_equal(sup_app_path(&c, SUP_PEOPLE, path, sizeof(path)), 0);
    assert_string_equal(path, want);

    /* Nowhere: -1, and the path tcpops would have run, for the message. */
    snprintf(want, sizeof(want), "%s/tcpops-pets", beside);
    assert_int_equal(sup_app_path(&c, SUP_PETS, path, sizeof(path)), -1);
    assert_string_equal(path, want);

    if (saved != NULL)
        setenv("PATH", saved, 1);
    else
        unsetenv("PATH");
    free(saved);
    snprintf(env, sizeof(env), "rm -rf '%s'", root);
    assert_int_equal(system(env), 0);
}

static void test_worker_command_lines(void **state)
{
    (void)state;
    sup_config c;
    sup_argv av;
    char err[512], line[2048];
    sup_config_default(&c);
    snprintf(c.bin_dir, sizeof(c.bin_dir), "/opt/tcpops/bin");
    snprintf(c.data_dir, sizeof(c.data_dir), "/srv/data");
    snprintf(c.apps[SUP_PEOPLE].args, sizeof(c.apps[SUP_PEOPLE].args), " --threads 2\t--x ");
    assert_int_equal(sup_app_argv(&c, SUP_PEOPLE, &av, err, sizeof(err)), 0);
    joined(&av, line, sizeof(line));
    assert_string_equal(line, "/opt/tcpops/bin/tcpops-people --listen 127.0.0.1:5002 "
                              LOG "--member-listen 127.0.0.1:0 --data-dir /srv/data "
                                  "--threads 2 --x");
    assert_int_equal(sup_app_argv(&c, SUP_GATEWAY, &av, err, sizeof(err)), 0);
    joined(&av, line, sizeof(line));
    assert_string_equal(line, "/opt/tcpops/bin/tcpops-gateway --listen 127.0.0.1:5001 "
                              LOG "--people 127.0.0.1:5002 --pets 127.0.0.1:5003");
    c.http_fd = 7;
    assert_int_equal(sup_app_argv(&c, SUP_GATEWAY, &av, err, sizeof(err)), 0);
    joined(&av, line, sizeof(line));
    assert_string_equal(line, "/opt/tcpops/bin/tcpops-gateway --listen 127.0.0.1:5001 "
                              LOG "--people 127.0.0.1:5002 --pets 127.0.0.1:5003 --listen-fd 7");
    /* More words than fit: refused, not cut. */
    char many[512] = "";
    for (int i = 0; i < 70; i++)
        strcat(many, "-x ");
    snprintf(c.apps[SUP_PETS].args, sizeof(c.apps[SUP_PETS].args), "%s", many);
    assert_int_equal(sup_app_argv(&c, SUP_PETS, &av, err, sizeof(err)), -1);
    assert_string_equal(err, "pets args: more than 51 words");
    /* As many as fit leave room for --ready-fd: every start can add it. */
    many[0] = '\0';
    for (int i = 0; i < 51; i++)
        strcat(many, "-x ");
    snprintf(c.apps[SUP_PETS].args, sizeof(c.apps[SUP_PETS].args), "%s", many);
    assert_int_equal(sup_app_argv(&c, SUP_PETS, &av, err, sizeof(err)), 0);
    if (sup_argv_ready(&av, 9, err, sizeof(err)) != 0)
        fail_msg("expected --ready-fd to fit after args sup_app_argv took, got \"%s\"", err);
    assert_string_equal(av.argv[1], "--ready-fd");
    assert_string_equal(av.argv[SUP_MAX_ARGV - 1], "-x");
    assert_null(av.argv[SUP_MAX_ARGV]);
    strcat(many, "-x");
    snprintf(c.apps[SUP_PETS].args, sizeof(c.apps[SUP_PETS].args), "%s", many);
    assert_int_equal(sup_app_argv(&c, SUP_PETS, &av, err, sizeof(err)), -1);
    assert_string_equal(err, "pets args: more than 51 words");
}

static void test_apps_on_this_host(void **state)
{
    (void)state;
    sup_config c;
    char err[512];
    sup_config_default(&c);
    assert_int_equal(sup_config_apps(&c, "people,pets", "--apps", err, sizeof(err)), 0);
    assert_int_equal(c.apps[SUP_GATEWAY].run, 0);
    assert_int_equal(c.apps[SUP_PEOPLE].run, 1);
    assert_int_equal(c.apps[SUP_PETS].run, 1);
    /* Refused whole: the apps that ran still do. */
    assert_int_equal(sup_config_apps(&c, "gateway,fish", "--apps", err, sizeof(err)), -1);
    assert_string_equal(err, "--apps: unknown app \"fish\" (gateway, people, pets)");
    assert_int_equal(sup_config_apps(&c, ",", "--apps", err, sizeof(err)), -1);
    assert_string_equal(err, "--apps: no app named (gateway, people, pets)");
    assert_int_equal(c.apps[SUP_GATEWAY].run, 0);
    assert_int_equal(c.apps[SUP_PEOPLE].run, 1);

    assert_int_equal(load(&c, "[tcpops]\napps = gateway\n", err, sizeof(err)), 0);
    assert_int_equal(c.apps[SUP_GATEWAY].run, 1);
    assert_int_equal(c.apps[SUP_PEOPLE].run, 0);
    assert_int_equal(c.apps[SUP_PETS].run, 0);
    expect_load_error("[tcpops]\napps = people,cats\n",
                      "FILE line 2: [tcpops] apps: unknown app \"cats\" (gateway, people, pets)");
}

static void test_db_and_advertise_settings(void **state)
{
    (void)state;
    sup_config c;
    char err[512];
    /* [tcpops] for every service, an app's own section over it, whatever
     * the order in the file. */
    int rc = load(&c,
                  "[pets]\ndb = sqlite:/srv/pets.db\nadvertise = 10.0.0.9\n"
                  "[tcpops]\ndb = postgresql://tcpops:pw@db1/tcpops\nadvertise = 10.0.0.5\n",
                  err, sizeof(err));
    if (rc != 0)
        fail_msg("expected the file to load, got \"%s\"", err);
    assert_string_equal(sup_app_db(&c, SUP_PEOPLE), "postgresql://tcpops:pw@db1/tcpops");
    assert_string_equal(sup_app_db(&c, SUP_PETS), "sqlite:/srv/pets.db");
    assert_string_equal(sup_app_advertise(&c, SUP_PEOPLE), "10.0.0.5");
    assert_string_equal(sup_app_advertise(&c, SUP_PETS), "10.0.0.9");
    assert_string_equal(sup_app_db(&c, SUP_GATEWAY), "");
    assert_string_equal(sup_app_advertise(&c, SUP_GATEWAY), "");
    /* A flag (--db, --advertise) is every service's, over both sections. */
    assert_int_equal(sup_config_set_all(&c, "db", "sqlite:", err, sizeof(err)), 0);
    assert_int_equal(sup_config_set_all(&c, "advertise", "h2", err, sizeof(err)), 0);
    assert_string_equal(sup_app_db(&c, SUP_PEOPLE), "sqlite:");
    assert_string_equal(sup_app_db(&c, SUP_PETS), "sqlite:");
    assert_string_equal(sup_app_advertise(&c, SUP_PETS), "h2");

    char long_host[100];
    memset(long_host, 'h', sizeof(long_host) - 1);
    long_host[sizeof(long_host) - 1] = '\0';
    assert_int_equal(sup_config_set_all(&c, "advertise", long_host, err, sizeof(err)), -1);
    assert_string_equal(err, "--advertise: longer than 55 bytes");
    assert_string_equal(sup_app_advertise(&c, SUP_PETS), "h2");
    expect_load_error("[gateway]\ndb = sqlite:\n", "FILE line 2: unknown setting [gateway] db");
}

static void test_store_as_ps_shows_it(void **state)
{
    (void)state;
    sup_config c;
    char out[4200], err[1200], dir[256], real[PATH_MAX], want[PATH_MAX + 64];
    snprintf(dir, sizeof(dir), "/tmp/tcpops-test-config-XXXXXX");
    assert_non_null(mkdtemp(dir));
    assert_non_null(realpath(dir, real));
    sup_config_default(&c);
    snprintf(c.data_dir, sizeof(c.data_dir), "%s/./", dir);
    /* The default: NAME.db under the data dir, as an absolute path. */
    assert_int_equal(sup_app_store(&c, SUP_PEOPLE, out, sizeof(out), err, sizeof(err)), 0);
    snprintf(want, sizeof(want), "sqlite:%s/people.db", real);
    assert_string_equal(out, want);
    rmdir(dir);
    /* PostgreSQL: the URL without its password. */
    sup_config_set_all(&c, "db", "postgresql://tcpops:s3cret@db1:5432/tcpops", err, sizeof(err));
    assert_int_equal(sup_app_store(&c, SUP_PETS, out, sizeof(out), err, sizeof(err)), 0);
    assert_string_equal(out, "postgresql://tcpops:***@db1:5432/tcpops");
    /* What the services would refuse, the same parser refuses here. */
    sup_config_set_all(&c, "db", "mysql://db1/tcpops", err, sizeof(err));
    assert_int_equal(sup_app_store(&c, SUP_PEOPLE, out, sizeof(out), err, sizeof(err)), -1);
    assert_string_equal(err, "people: --db: expected sqlite:, sqlite:PATH, postgresql://... or "
                             "postgres://..., got \"mysql://db1/tcpops\"");
    sup_config_set_all(&c, "db", "postgresql://db1/tcpops?nosuch=1", err, sizeof(err));
    assert_int_equal(sup_app_store(&c, SUP_PEOPLE, out, sizeof(out), err, sizeof(err)), -1);
    if (strstr(err, "people: --db: not a PostgreSQL URL libpq accepts") != err)
        fail_msg("expected libpq's refusal, got \"%s\"", err);
}

/* The command lines of a service host and of a gateway-only host. */
static void test_command_lines_across_hosts(void **state)
{
    (void)state;
    sup_config c;
    sup_argv av;
    char err[512], line[4096];
    sup_config_default(&c);
    snprintf(c.bin_dir, sizeof(c.bin_dir), "/b");
    snprintf(c.data_dir, sizeof(c.data_dir), "/d");
    sup_app_set(&c.apps[SUP_PEOPLE], "listen", "0.0.0.0:5002", err, sizeof(err));
    sup_config_set_all(&c, "db", "postgresql://db1/tcpops", err, sizeof(err));
    sup_config_set_all(&c, "advertise", "10.0.0.5", err, sizeof(err));
    assert_int_equal(sup_app_argv(&c, SUP_PEOPLE, &av, err, sizeof(err)), 0);
    joined(&av, line, sizeof(line));
    assert_string_equal(line, "/b/tcpops-people --listen 0.0.0.0:5002 " LOG
                              "--member-listen 0.0.0.0:0 "
                              "--data-dir /d --db postgresql://db1/tcpops --advertise 10.0.0.5");
    /* The gateway beside it dials the wildcard on loopback. */
    assert_int_equal(sup_app_argv(&c, SUP_GATEWAY, &av, err, sizeof(err)), 0);
    joined(&av, line, sizeof(line));
    assert_string_equal(line, "/b/tcpops-gateway --listen 127.0.0.1:5001 " LOG
                              "--people 127.0.0.1:5002 --pets 127.0.0.1:5003");
    /* A gateway-only host: the services' lists go to it unchanged. */
    sup_config_apps(&c, "gateway", "--apps", err, sizeof(err));
    sup_app_set(&c.apps[SUP_PEOPLE], "listen", "h1:5002,h2.example:5002", err, sizeof(err));
    sup_app_set(&c.apps[SUP_PETS], "listen", "0.0.0.0:5003,h2:5003", err, sizeof(err));
    assert_int_equal(sup_app_argv(&c, SUP_GATEWAY, &av, err, sizeof(err)), 0);
    joined(&av, line, sizeof(line));
    assert_string_equal(line, "/b/tcpops-gateway --listen 127.0.0.1:5001 " LOG
                              "--people h1:5002,h2.example:5002 --pets 0.0.0.0:5003,h2:5003");
}

/* The example a service host starts from (deploy/tcpops.ini) loads, and
 * its PostgreSQL URL is one the services accept. */
/* [gateway] https_cert and https_key reach the gateway's command line; no
 * service takes them. */
static void test_https_settings(void **state)
{
    (void)state;
    sup_config c;
    sup_argv av;
    char err[512], line[2048];
    assert_int_equal(load(&c, "[gateway]\nhttps_cert = /etc/tcpops/gw.crt\n"
                              "https_key = /etc/tcpops/gw.key\n", err, sizeof(err)), 0);
    snprintf(c.bin_dir, sizeof(c.bin_dir), "/opt/tcpops/bin");
    assert_int_equal(sup_app_argv(&c, SUP_GATEWAY, &av, err, sizeof(err)), 0);
    joined(&av, line, sizeof(line));
    assert_string_equal(line, "/opt/tcpops/bin/tcpops-gateway --listen 127.0.0.1:5001 "
                              LOG "--people 127.0.0.1:5002 --pets 127.0.0.1:5003 "
                              "--https-cert /etc/tcpops/gw.crt --https-key /etc/tcpops/gw.key");
    expect_load_error("[people]\nhttps_cert = /etc/tcpops/gw.crt\n",
                      "FILE line 2: unknown setting [people] https_cert");
}

static void test_deploy_example_loads(void **state)
{
    (void)state;
    sup_config c;
    char err[1200], out[4200];
    sup_config_default(&c);
    if (sup_config_load(&c, TCPOPS_SOURCE_DIR "/deploy/tcpops.ini", err, sizeof(err)) < 0)
        fail_msg("expected deploy/tcpops.ini to load, got \"%s\"", err);
    assert_int_equal(c.apps[SUP_GATEWAY].run, 0);
    assert_int_equal(c.apps[SUP_PEOPLE].run, 1);
    assert_int_equal(c.apps[SUP_PETS].run, 1);
    assert_string_equal(c.apps[SUP_PEOPLE].listen, "0.0.0.0:5002");
    assert_string_equal(sup_app_advertise(&c, SUP_PETS), "10.0.0.11");
    assert_string_equal(c.tls_cert, "/etc/tcpops/tls/server.crt");
    assert_string_equal(c.tls_key, "/etc/tcpops/tls/server.key");
    assert_string_equal(c.tls_ca, "/etc/tcpops/tls/ca.crt");
    assert_int_equal(c.insecure, 0);
    assert_int_equal(sup_app_store(&c, SUP_PETS, out, sizeof(out), err, sizeof(err)), 0);
    assert_string_equal(out, "postgresql://tcpops:***@db1:5432/tcpops");
}

/* TLS and --insecure reach every program: [tcpops] tls_* and insecure in
 * the file, --tls-* over them, each worker's command line. */
static void test_tls_and_insecure_settings(void **state)
{
    (void)state;
    sup_config c;
    sup_argv av;
    char err[512], line[4096];
    sup_config_default(&c);
    if (load(&c, "[tcpops]\ntls_cert = /t/a.crt\ntls_key = /t/a.key\ntls_ca = /t/ca.crt\n"
                 "insecure = yes\n", err, sizeof(err)) < 0)
        fail_msg("expected the file to load, got \"%s\"", err);
    snprintf(c.bin_dir, sizeof(c.bin_dir), "/b");
    snprintf(c.data_dir, sizeof(c.data_dir), "/d");
    assert_int_equal(c.insecure, 1);
    assert_int_equal(sup_config_set_all(&c, "tls_cert", "/u/b.crt", err, sizeof(err)), 0);
    assert_int_equal(sup_app_argv(&c, SUP_PETS, &av, err, sizeof(err)), 0);
    joined(&av, line, sizeof(line));
    assert_string_equal(line, "/b/tcpops-pets --listen 127.0.0.1:5003 " LOG
                              "--tls-cert /u/b.crt "
                              "--tls-key /t/a.key --tls-ca /t/ca.crt --insecure "
                              "--member-listen 127.0.0.1:0 --data-dir /d");
    assert_int_equal(sup_app_argv(&c, SUP_GATEWAY, &av, err, sizeof(err)), 0);
    joined(&av, line, sizeof(line));
    assert_string_equal(line, "/b/tcpops-gateway --listen 127.0.0.1:5001 " LOG
                              "--tls-cert /u/b.crt "
                              "--tls-key /t/a.key --tls-ca /t/ca.crt --insecure "
                              "--people 127.0.0.1:5002 --pets 127.0.0.1:5003");

    expect_load_error("[tcpops]\ninsecure = maybe\n",
                      "FILE line 2: [tcpops] insecure: \"maybe\" is not true or false");
    char long_path[SUP_PATH_MAX + 8];
    memset(long_path, 'x', sizeof(long_path) - 1);
    long_path[sizeof(long_path) - 1] = '\0';
    assert_int_equal(sup_config_set_all(&c, "tls_ca", long_path, err, sizeof(err)), -1);
    assert_string_equal(err, "--tls-ca: longer than 1023 bytes");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_ini_values),
        cmocka_unit_test(test_ini_errors_name_the_line),
        cmocka_unit_test(test_ini_missing_file),
        cmocka_unit_test(test_pairs),
        cmocka_unit_test(test_app_set_never_cuts),
        cmocka_unit_test(test_worker_command_lines),
        cmocka_unit_test(test_apps_on_this_host),
        cmocka_unit_test(test_db_and_advertise_settings),
        cmocka_unit_test(test_store_as_ps_shows_it),
        cmocka_unit_test(test_command_lines_across_hosts),
        cmocka_unit_test(test_https_settings),
        cmocka_unit_test(test_programs_beside_tcpops_then_on_path),
        cmocka_unit_test(test_deploy_example_loads),
        cmocka_unit_test(test_tls_and_insecure_settings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
