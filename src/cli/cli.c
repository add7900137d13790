/* tcpops-cli: talks RPC to one service directly, the `nc` of the original.
 * Prints the answer as JSON on stdout. Exit codes: 0 OK, 1 an RPC error
 * status (printed on stderr with its code), 2 usage, 3 service unreachable
 * (or something else, such as an HTTP server, answers on that port). */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/channel.h"
#include "rpc/clock.h"
#include "rpc/conn.h"
#include "util/flags.h"
#include "util/pbjson.h"
#include "tcpops.pb-c.h"

enum { EXIT_OK = 0, EXIT_RPC = 1, EXIT_USAGE = 2, EXIT_UNREACHABLE = 3 };

static const char usage_text[] =
    "usage: tcpops-cli [--addr HOST:PORT] [--timeout MS]\n"
    "                  [--tls-cert FILE --tls-key FILE --tls-ca FILE] COMMAND [ARGS]\n"
    "\n"
    "commands:\n"
    "  status                          the service's status and live members\n"
    "  ping                            PING/PONG round trip\n"
    "  people list [--limit N] [--after NAME]\n"
    "  people create NAME\n"
    "  people pets OWNER               ids of the pets OWNER owns\n"
    "  people add-pet OWNER PET_ID\n"
    "  pets get ID...\n"
    "  pets create NAME\n"
    "\n"
    "--addr defaults to 127.0.0.1:5002 for people, status and ping, and to\n"
    "127.0.0.1:5003 for pets. Output is JSON on stdout. Exit codes: 0 OK,\n"
    "1 an error status from the service, 2 usage, 3 service unreachable.\n"
    "The flags below may come after the command too (tcpops-cli status --addr\n"
    "HOST:PORT); `--` ends them. `tcpops-cli COMMAND --help` describes one command.\n"
    "\n"
    "flags:\n";

typedef struct cli {
    const char *addr;
    long timeout_ms;
    rpc_tls_files files;  /* --tls-* */
    rpc_tls *tls;         /* NULL: plaintext */
    char why[RPC_ERRLEN]; /* why the last connection attempt failed, beyond errno */
} cli;

/* The channel's events: keeps why a connection attempt failed (TLS says
 * more than an errno). */
static void note_event(void *user, const rpc_event *ev)
{
    cli *c = user;
    if (ev->type == RPC_EV_CONNECT_FAILED && *ev->why)
        snprintf(c->why, sizeof(c->why), "%s", ev->why);
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "tcpops-cli: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n(see tcpops-cli --help)\n");
    return EXIT_USAGE;
}

static int print_message(const ProtobufCMessage *m)
{
    json_t *j = pbjson_from_message(m);
    char *s = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (s == NULL) {
        fprintf(stderr, "tcpops-cli: out of memory\n");
        return EXIT_RPC;
    }
    printf("%s\n", s);
    free(s);
    return EXIT_OK;
}

/* Calls method with req on addr and prints the answer as resp_desc. */
static int rpc(cli *c, const char *method, const ProtobufCMessage *req,
               const ProtobufCMessageDescriptor *resp_desc)
{
    char err[RPC_ERRLEN];
    rpc_channel_cfg cfg;
    rpc_channel *ch = NULL;
    const char *eps[] = {c->addr};
    rpc_channel_cfg_default(&cfg);
    cfg.name = "tcpops-cli";
    cfg.endpoints = eps;
    cfg.nendpoints = 1;
    cfg.pool_size = 1;
    cfg.connect_timeout_ms = (int)c->timeout_ms;
    cfg.max_deadline_ms = (int)c->timeout_ms;
    cfg.tls = c->tls;
    cfg.on_event = note_event;
    cfg.event_user = c;
    if (rpc_channel_new(&ch, &cfg, err) < 0)
        return usage_error("%s", err);

    size_t n = protobuf_c_message_get_packed_size(req);
    uint8_t *body = malloc(n ? n : 1);
    if (body == NULL) {
        rpc_channel_free(ch);
        return EXIT_RPC;
    }
    protobuf_c_message_pack(req, body);
    rpc_call call = {.method = method, .body = body, .body_len = n,
                     .deadline_ms = (int)c->timeout_ms};
    int st = rpc_channel_call(ch, &call);
    int rc;
    if (st == TCPOPS__STATUS__OK) {
        ProtobufCMessage *m = protobuf_c_message_unpack(resp_desc, NULL, call.resp_len,
                                                        call.resp);
        if (m == NULL) {
            fprintf(stderr, "tcpops-cli: %s answered bytes that are not a %s\n", method,
                    resp_desc->short_name);
            rc = EXIT_RPC;
        } else {
            rc = print_message(m);
            protobuf_c_message_free_unpacked(m, NULL);
        }
    } else if (call.err == -EPROTONOSUPPORT) {
        fprintf(stderr, "tcpops-cli: not a tcpops service at %s\n", c->addr);
        rc = EXIT_UNREACHABLE;
    } else if (call.attempts == 0 && (st == TCPOPS__STATUS__UNAVAILABLE ||
                                      st == TCPOPS__STATUS__DEADLINE_EXCEEDED)) {
        fprintf(stderr, "tcpops-cli: cannot reach %s: %s\n", c->addr,
                *c->why                                    ? c->why
                : st == TCPOPS__STATUS__DEADLINE_EXCEEDED ? "timed out"
                                                           : call.error);
        rc = EXIT_UNREACHABLE;
    } else {
        fprintf(stderr, "tcpops-cli: %s: %s\n", rpc_status_name(st), call.error);
        rc = EXIT_RPC;
    }
    rpc_call_fini(&call);
    free(body);
    rpc_channel_free(ch);
    return rc;
}

/* The largest PONG payload ping accepts: a PONG is a few bytes, so a first
 * frame claiming more is no answer to our PING. */
#define PONG_MAX 252

/* ping: one PING frame on a fresh connection, timed until its PONG. */
static int ping(cli *c)
{
    char err[RPC_ERRLEN];
    struct sockaddr_in sa;
    if (rpc_addr_parse(c->addr, &sa, err) < 0)
        return usage_error("%s", err);
    int64_t deadline = rpc_now_ms() + c->timeout_ms;
    int fd = rpc_sock_connect(&sa, (int)c->timeout_ms);
    if (fd < 0) {
        fprintf(stderr, "tcpops-cli: cannot reach %s: %s\n", c->addr, strerror(-fd));
        return EXIT_UNREACHABLE;
    }
    rpc_conn conn;
    rpc_conn_init(&conn, fd, PONG_MAX, 0);
    int64_t t0 = rpc_now_us();
    int rc = c->tls != NULL ? rpc_conn_tls_start(&conn, c->tls, c->addr, NULL, err) : 0;
    if (rc == 0)
        rc = rpc_conn_handshake(&conn, deadline);
    if (rc < 0 && *rpc_conn_tls_error(&conn)) {
        fprintf(stderr, "tcpops-cli: cannot reach %s: TLS: %s\n", c->addr,
                rpc_conn_tls_error(&conn));
        rpc_conn_fini(&conn);
        return EXIT_UNREACHABLE;
    }
    rpc_frame f = TCPOPS__FRAME__INIT;
    f.kind = TCPOPS__KIND__PING;
    f.id = 1;
    if (rc == 0)
        rc = rpc_conn_send(&conn, &f);
    if (rc == 0)
        rc = rpc_conn_flush_wait(&conn, deadline);
    if (rc == 0) {
        /* The first bytes back must be a PONG frame: anything else (an
         * HTTP server's "HTTP/1.1 400") is not a tcpops service. */
        rpc_frame *pong = NULL;
        rc = rpc_conn_recv_frame(&conn, &pong, deadline);
        if (rc == -EMSGSIZE || rc == -EPROTO || (rc == 1 && pong->kind != TCPOPS__KIND__PONG))
            rc = -EPROTONOSUPPORT;
        rpc_frame_free(pong);
    }
    int64_t rtt = rpc_now_us() - t0;
    rpc_conn_fini(&conn);
    if (rc == -EPROTONOSUPPORT) {
        fprintf(stderr, "tcpops-cli: not a tcpops service at %s\n", c->addr);
        return EXIT_UNREACHABLE;
    }
    if (rc < 0) {
        fprintf(stderr, "tcpops-cli: ping %s: %s\n", c->addr, strerror(-rc));
        return rc == -ETIMEDOUT ? EXIT_UNREACHABLE : EXIT_RPC;
    }
    printf("{\"pong\":true,\"addr\":\"%s\",\"rtt_us\":%lld}\n", c->addr, (long long)rtt);
    return EXIT_OK;
}

/* A pet id: SQLite row ids are 1 to INT64_MAX. */
static int parse_id(const char *s, uint64_t *out)
{
    char err[128];
    long v;
    if (util_parse_num(s, UTIL_NUM_PLAIN, 0, LONG_MAX, &v, "id", err, sizeof(err)) < 0)
        return -1;
    *out = (uint64_t)v;
    return 0;
}

/* The flags of a command, flags[0..n) (maybe none), in argv[first..]:
 * -1 to go on, with its other arguments at argv[*pos..]; else the exit
 * code after its help (-h, --help) on stdout or a usage error. */
static int command_flags(const util_flag *flags, size_t n, int argc, char **argv, int first,
                         const char *help, int *pos)
{
    char err[256];
    *pos = util_flags_parse(flags, n, argc, argv, first, err, sizeof(err));
    if (*pos == 0) {
        fputs(help, stdout);
        return EXIT_OK;
    }
    if (*pos < 0)
        return usage_error("%s", err);
    return -1;
}

/* argv[0] is "people", argv[1] what to do with them. */
static int people_cmd(cli *c, int argc, char **argv)
{
    static const char help[] =
        "usage: tcpops-cli [--addr HOST:PORT] people list [--limit N] [--after NAME]\n"
        "       tcpops-cli [--addr HOST:PORT] people create NAME\n"
        "       tcpops-cli [--addr HOST:PORT] people pets OWNER\n"
        "       tcpops-cli [--addr HOST:PORT] people add-pet OWNER PET_ID\n";
    if (argc < 2) {
        fputs(help, stderr);
        return EXIT_USAGE;
    }
    /* "people --help" asks for help; any other flag before the command is
     * not one of people's (--limit is list's: people list --limit N). */
    const char *sub = argv[1][0] != '-' ? argv[1] : NULL;
    long limit = 0;
    const char *after = "";
    const util_flag flags[] = {
        {"limit", UTIL_FLAG_INT, &limit, "N", "names per page", 0, 1000},
        {"after", UTIL_FLAG_STR, &after, "NAME", "page after this name", 0, 0},
    };
    int list = sub != NULL && strcmp(sub, "list") == 0, pos;
    int rc = command_flags(flags, list ? 2 : 0, argc, argv, sub != NULL ? 2 : 1, help, &pos);
    if (rc >= 0)
        return rc;
    if (sub == NULL)
        return usage_error("people: expected list, create, pets or add-pet, got \"%s\"",
                           argv[1]);
    int nargs = argc - pos;
    char **args = argv + pos;
    if (list) {
        if (nargs != 0)
            return usage_error("people list: unexpected argument \"%s\"", args[0]);
        Tcpops__ListPeopleRequest req = TCPOPS__LIST_PEOPLE_REQUEST__INIT;
        req.limit = (uint32_t)limit;
        req.after = (char *)after;
        return rpc(c, "people.List", &req.base, &tcpops__list_people_response__descriptor);
    }
    if (strcmp(sub, "create") == 0) {
        if (nargs != 1)
            return usage_error("people create takes one NAME");
        Tcpops__CreatePersonRequest req = TCPOPS__CREATE_PERSON_REQUEST__INIT;
        req.name = args[0];
        return rpc(c, "people.Create", &req.base, &tcpops__create_person_response__descriptor);
    }
    if (strcmp(sub, "pets") == 0) {
        if (nargs != 1)
            return usage_error("people pets takes one OWNER");
        Tcpops__PetIdsRequest req = TCPOPS__PET_IDS_REQUEST__INIT;
        req.owner = args[0];
        return rpc(c, "people.PetIds", &req.base, &tcpops__pet_ids_response__descriptor);
    }
    if (strcmp(sub, "add-pet") == 0) {
        Tcpops__AddPetRequest req = TCPOPS__ADD_PET_REQUEST__INIT;
        if (nargs != 2 || parse_id(args[1], &req.pet_id) < 0)
            return usage_error("people add-pet takes OWNER and a numeric PET_ID");
        req.owner = args[0];
        return rpc(c, "people.AddPet", &req.base, &tcpops__add_pet_response__descriptor);
    }
    return usage_error("unknown people command \"%s\"", sub);
}

/* argv[0] is "pets", argv[1] what to do with them. */
static int pets_cmd(cli *c, int argc, char **argv)
{
    static const char help[] = "usage: tcpops-cli [--addr HOST:PORT] pets get ID...\n"
                               "       tcpops-cli [--addr HOST:PORT] pets create NAME\n";
    if (argc < 2) {
        fputs(help, stderr);
        return EXIT_USAGE;
    }
    const char *sub = argv[1][0] != '-' ? argv[1] : NULL;
    int pos, rc = command_flags(NULL, 0, argc, argv, sub != NULL ? 2 : 1, help, &pos);
    if (rc >= 0)
        return rc;
    if (sub == NULL)
        return usage_error("pets: expected get or create, got \"%s\"", argv[1]);
    int nargs = argc - pos;
    char **args = argv + pos;
    if (strcmp(sub, "get") == 0) {
        if (nargs < 1)
            return usage_error("pets get takes one or more IDs");
        uint64_t *ids = calloc((size_t)nargs, sizeof(*ids));
        if (ids == NULL)
            return EXIT_RPC;
        for (int i = 0; i < nargs; i++) {
            if (parse_id(args[i], &ids[i]) < 0) {
                free(ids);
                return usage_error("pets get: \"%s\" is not a pet id", args[i]);
            }
        }
        Tcpops__GetPetsByIdsRequest req = TCPOPS__GET_PETS_BY_IDS_REQUEST__INIT;
        req.n_ids = (size_t)nargs;
        req.ids = ids;
        rc = rpc(c, "pets.GetByIds", &req.base, &tcpops__get_pets_by_ids_response__descriptor);
        free(ids);
        return rc;
    }
    if (strcmp(sub, "create") == 0) {
        if (nargs != 1)
            return usage_error("pets create takes one NAME");
        Tcpops__CreatePetRequest req = TCPOPS__CREATE_PET_REQUEST__INIT;
        req.name = args[0];
        return rpc(c, "pets.Create", &req.base, &tcpops__create_pet_response__descriptor);
    }
    return usage_error("unknown pets command \"%s\"", sub);
}

/* Runs the command at argv[pos] (after the program's flags, which were
 * taken from wherever they came: its own, if any, follow it). */
static int run_command(cli *c, int pos, int argc, char **argv)
{
    if (pos >= argc) {
        fputs(usage_text, stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[pos];
    if (c->addr == NULL)
        c->addr = strcmp(cmd, "pets") == 0 ? "127.0.0.1:5003" : "127.0.0.1:5002";

    if (strcmp(cmd, "status") == 0 || strcmp(cmd, "ping") == 0) {
        char help[96];
        int rest;
        snprintf(help, sizeof(help), "usage: tcpops-cli [--addr HOST:PORT] %s\n", cmd);
        int rc = command_flags(NULL, 0, argc - pos, argv + pos, 1, help, &rest);
        if (rc >= 0)
            return rc;
        if (rest != argc - pos)
            return usage_error("%s takes no arguments", cmd);
        if (strcmp(cmd, "ping") == 0)
            return ping(c);
        Tcpops__StatusRequest req = TCPOPS__STATUS_REQUEST__INIT;
        return rpc(c, "svc.Status", &req.base, &tcpops__status_response__descriptor);
    }
    if (strcmp(cmd, "people") == 0)
        return people_cmd(c, argc - pos, argv + pos);
    if (strcmp(cmd, "pets") == 0)
        return pets_cmd(c, argc - pos, argv + pos);
    return usage_error("unknown command \"%s\"", cmd);
}

int main(int argc, char **argv)
{
    cli c = {.addr = NULL, .timeout_ms = 2000};
    const util_flag flags[] = {
        {"addr", UTIL_FLAG_STR, &c.addr, "HOST:PORT", "the service to talk to", 0, 0},
        {"timeout", UTIL_FLAG_INT, &c.timeout_ms, "MS", "deadline of the call", 1, 60000},
        {"tls-cert", UTIL_FLAG_STR | UTIL_FLAG_SHARED, &c.files.cert, "FILE",
         "TLS: the client certificate (PEM) to present", 0, 0},
        {"tls-key", UTIL_FLAG_STR | UTIL_FLAG_SHARED, &c.files.key, "FILE",
         "TLS: its private key", 0, 0},
        {"tls-ca", UTIL_FLAG_STR | UTIL_FLAG_SHARED, &c.files.ca, "FILE",
         "TLS: the CA that signs the service's certificate", 0, 0},
    };
    const size_t nflags = sizeof(flags) / sizeof(flags[0]);
    char err[RPC_ERRLEN];
    signal(SIGPIPE, SIG_IGN);
    util_flags_program("cli");
    int pos = util_flags_parse_command(flags, nflags, argc, argv, 1, err, sizeof(err));
    if (pos == 0) {
        fputs(usage_text, stdout);
        util_flags_usage(stdout, flags, nflags);
        return EXIT_OK;
    }
    if (pos < 0)
        return usage_error("%s", err);
    int given = rpc_tls_files_check(&c.files, err);
    if (given < 0)
        return usage_error("%s", err);
    if (given == 1 && rpc_tls_new(&c.tls, RPC_TLS_CLIENT, &c.files, err) < 0)
        return usage_error("%s", err);
    int rc = run_command(&c, pos, argc, argv);
    rpc_tls_free(c.tls);
    return rc;
}
