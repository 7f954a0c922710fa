#!/bin/bash
# pg-primary (deploy/compose-ha.yaml), at its first start: let the standby stream from it (replication
# connections with the same password, over the compose network only).
set -euo pipefail
echo "host replication traza all scram-sha-256" >> "$PGDATA/pg_hba.conf"
