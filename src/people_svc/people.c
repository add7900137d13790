/* tcpops-people: people and the pets they own, over RPC (see svc.h for the
 * runtime). Handlers validate input, then call the store; writes go through
 * the group-commit writer and are answered only after COMMIT. */
#include <stdlib.h>
#include <string.h>

#include "people_svc/people_store.h"
#include "svc/svc.h"
#include "people_svc/people.h"
#include "tcpops.pb-c.h"

#define UNPACK(type, lower, body, len, out) \
    ((type *)svc_unpack(&lower##__descriptor, body, len, out))

static void list_handler(const rpc_call_ctx *ctx, const uint8_t *body, size_t len,
                         rpc_reply *out)
{
    Tcpops__ListPeopleRequest *req =
        UNPACK(Tcpops__ListPeopleRequest, tcpops__list_people_request, body, len, out);
    if (req == NULL)
        return;
    char **names = NULL;
    size_t n = 0;
    char after[UTIL_NAME_MAX + 1] = "";
    /* A page starts after a name: the name in its stored (NFC) form. */
    if (req->after[0] != '\0' && svc_check_name("after", req->after, after, out) < 0) {
        protobuf_c_message_free_unpacked(&req->base, NULL);
        return;
    }
    int st = people_store_list(svc_ctx_conn(ctx), req->limit, after, &names, &n, out->error,
                               sizeof(out->error));
    out->status = st;
    if (st == TCPOPS__STATUS__OK) {
        Tcpops__ListPeopleResponse resp = TCPOPS__LIST_PEOPLE_RESPONSE__INIT;
        resp.n_names = n;
        resp.names = names;
        rpc_reply_pack(out, &resp.base);
        people_store_free_names(names, n);
    }
    protobuf_c_message_free_unpacked(&req->base, NULL);
}

static int write_create(svc_conn *c, void *arg, char *err, size_t errlen)
{
    return people_store_create(c, arg, err, errlen);
}

static void create_handler(const rpc_call_ctx *ctx, const uint8_t *body, size_t len,
                           rpc_reply *out)
{
    Tcpops__CreatePersonRequest *req =
        UNPACK(Tcpops__CreatePersonRequest, tcpops__create_person_request, body, len, out);
    if (req == NULL)
        return;
    char name[UTIL_NAME_MAX + 1];
    if (svc_check_name("name", req->name, name, out) == 0 &&
        svc_ctx_write(ctx, write_create, name, out) == TCPOPS__STATUS__OK) {
        Tcpops__CreatePersonResponse resp = TCPOPS__CREATE_PERSON_RESPONSE__INIT;
        resp.name = name;
        rpc_reply_pack(out, &resp.base);
    }
    protobuf_c_message_free_unpacked(&req->base, NULL);
}

static void pet_ids_handler(const rpc_call_ctx *ctx, const uint8_t *body, size_t len,
                            rpc_reply *out)
{
    Tcpops__PetIdsRequest *req =
        UNPACK(Tcpops__PetIdsRequest, tcpops__pet_ids_request, body, len, out);
    if (req == NULL)
        return;
    uint64_t *ids = NULL;
    size_t n = 0;
    char owner[UTIL_NAME_MAX + 1];
    if (svc_check_name("owner", req->owner, owner, out) == 0) {
        out->status = people_store_pet_ids(svc_ctx_conn(ctx), owner, &ids, &n, out->error,
                                           sizeof(out->error));
        if (out->status == TCPOPS__STATUS__OK) {
            Tcpops__PetIdsResponse resp = TCPOPS__PET_IDS_RESPONSE__INIT;
            resp.n_ids = n;
            resp.ids = ids;
            rpc_reply_pack(out, &resp.base);
        }
    }
    free(ids);
    protobuf_c_message_free_unpacked(&req->base, NULL);
}

typedef struct add_pet_args {
    const char *owner; /* NFC */
    uint64_t pet_id;
} add_pet_args;

static int write_add_pet(svc_conn *c, void *arg, char *err, size_t errlen)
{
    add_pet_args *a = arg;
    return people_store_add_pet(c, a->owner, a->pet_id, err, errlen);
}

static void add_pet_handler(const rpc_call_ctx *ctx, const uint8_t *body, size_t len,
                            rpc_reply *out)
{
    Tcpops__AddPetRequest *req =
        UNPACK(Tcpops__AddPetRequest, tcpops__add_pet_request, body, len, out);
    if (req == NULL)
        return;
    char owner[UTIL_NAME_MAX + 1];
    add_pet_args a = {.owner = owner, .pet_id = req->pet_id};
    if (svc_check_name("owner", req->owner, owner, out) == 0 &&
        svc_ctx_write(ctx, write_add_pet, &a, out) == TCPOPS__STATUS__OK) {
        Tcpops__AddPetResponse resp = TCPOPS__ADD_PET_RESPONSE__INIT;
        rpc_reply_pack(out, &resp.base);
    }
    protobuf_c_message_free_unpacked(&req->base, NULL);
}

static const svc_method methods[] = {
    {"people.List", list_handler, &tcpops__list_people_request__descriptor,
     &tcpops__list_people_response__descriptor, 0},
    {"people.Create", create_handler, &tcpops__create_person_request__descriptor,
     &tcpops__create_person_response__descriptor, 0},
    {"people.PetIds", pet_ids_handler, &tcpops__pet_ids_request__descriptor,
     &tcpops__pet_ids_response__descriptor, .quick = 1},
    {"people.AddPet", add_pet_handler, &tcpops__add_pet_request__descriptor,
     &tcpops__add_pet_response__descriptor, 0},
};

const svc_desc *people_service(void)
{
    /* Filled at run time: the migration count is not a constant expression. */
    static svc_desc desc;
    desc = (svc_desc){
        .name = "people",
        .default_listen = "127.0.0.1:5002",
        .migrations = people_sqlite_migrations,
        .nmigrations = people_sqlite_nmigrations,
        .pg_migrations = people_postgresql_migrations,
        .pg_nmigrations = people_postgresql_nmigrations,
        .methods = methods,
        .nmethods = sizeof(methods) / sizeof(methods[0]),
    };
    return &desc;
}
