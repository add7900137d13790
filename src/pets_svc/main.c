/* tcpops-pets: the pets service (see pets.c, and svc.h for the runtime). */
#include "pets_svc/pets.h"

int main(int argc, char **argv)
{
    return svc_main(pets_service(), argc, argv);
}
