/* tcpops-pets: pets by id, over RPC (see svc.h for the runtime). */
#include <stdlib.h>
#include <string.h>

#include "pets_svc/pets_store.h"
#include "svc/svc.h"
#include "pets_svc/pets.h"
#include "tcpops.pb-c.h"

static void get_by_ids_handler(const rpc_call_ctx *ctx, const uint8_t *body, size_t len,
                               rpc_reply *out)
{
    Tcpops__GetPetsByIdsRequest *req = (Tcpops__GetPetsByIdsRequest *)svc_unpack(
        &tcpops__get_pets_by_ids_request__descriptor, body, len, out);
    if (req == NULL)
        return;
    size_t n = req->n_ids;
    char **names = calloc(n ? n : 1, sizeof(*names));
    Tcpops__Pet *pets = calloc(n ? n : 1, sizeof(*pets));
    Tcpops__Pet **ptrs = calloc(n ? n : 1, sizeof(*ptrs));
    uint64_t *missing = calloc(n ? n : 1, sizeof(*missing));
    if (names == NULL || pets == NULL || ptrs == NULL || missing == NULL) {
        rpc_reply_error(out, TCPOPS__STATUS__INTERNAL, "out of memory");
        goto out;
    }
    out->status = pets_store_get_by_ids(svc_ctx_conn(ctx), req->ids, n, names, out->error,
                                        sizeof(out->error));
    if (out->status != TCPOPS__STATUS__OK)
        goto out;
    Tcpops__GetPetsByIdsResponse resp = TCPOPS__GET_PETS_BY_IDS_RESPONSE__INIT;
    for (size_t i = 0; i < n; i++) {
        if (names[i] == NULL) {
            missing[resp.n_missing++] = req->ids[i];
            continue;
        }
        tcpops__pet__init(&pets[resp.n_pets]);
        pets[resp.n_pets].id = req->ids[i];
        pets[resp.n_pets].name = names[i];
        ptrs[resp.n_pets] = &pets[resp.n_pets];
        resp.n_pets++;
    }
    resp.pets = ptrs;
    resp.missing = missing;
    rpc_reply_pack(out, &resp.base);
    pets_store_free_names(names, n);
out:
    free(names);
    free(pets);
    free(ptrs);
    free(missing);
    protobuf_c_message_free_unpacked(&req->base, NULL);
}

typedef struct create_args {
    const char *name;
    uint64_t id;
} create_args;

static int write_create(svc_conn *c, void *arg, char *err, size_t errlen)
{
    create_args *a = arg;
    return pets_store_create(c, a->name, &a->id, err, errlen);
}

static void create_handler(const rpc_call_ctx *ctx, const uint8_t *body, size_t len,
                           rpc_reply *out)
{
    Tcpops__CreatePetRequest *req = (Tcpops__CreatePetRequest *)svc_unpack(
        &tcpops__create_pet_request__descriptor, body, len, out);
    if (req == NULL)
        return;
    char name[UTIL_NAME_MAX + 1];
    create_args a = {.name = name};
    if (svc_check_name("name", req->name, name, out) == 0 &&
        svc_ctx_write(ctx, write_create, &a, out) == TCPOPS__STATUS__OK) {
        Tcpops__CreatePetResponse resp = TCPOPS__CREATE_PET_RESPONSE__INIT;
        resp.id = a.id;
        rpc_reply_pack(out, &resp.base);
    }
    protobuf_c_message_free_unpacked(&req->base, NULL);
}

static const svc_method methods[] = {
    {"pets.GetByIds", get_by_ids_handler, &tcpops__get_pets_by_ids_request__descriptor,
     &tcpops__get_pets_by_ids_response__descriptor, .quick = 1},
    {"pets.Create", create_handler, &tcpops__create_pet_request__descriptor,
     &tcpops__create_pet_response__descriptor, 0},
};

const svc_desc *pets_service(void)
{
    /* Filled at run time: the migration count is not a constant expression. */
    static svc_desc desc;
    desc = (svc_desc){
        .name = "pets",
        .default_listen = "127.0.0.1:5003",
        .migrations = pets_sqlite_migrations,
        .nmigrations = pets_sqlite_nmigrations,
        .pg_migrations = pets_postgresql_migrations,
        .pg_nmigrations = pets_postgresql_nmigrations,
        .methods = methods,
        .nmethods = sizeof(methods) / sizeof(methods[0]),
    };
    return &desc;
}
