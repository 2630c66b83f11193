#!/usr/bin/env bash
# Makes the Secrets that k8s/overlays/secure (and secure-keda-kafka) expect, with openssl, offline:
#
#   kafka-broker-tls     ca.crt, tls.crt, tls.key   the brokers' certificate (server and client auth),
#                                                   its SANs every name a broker is reached by:
#                                                   kafka-<n>.kafka-headless[.<ns>[.svc[.<domain>]]]
#                                                   and the bootstrap kafka[.<ns>[.svc[.<domain>]]]
#   kafka-client-tls     ca.crt, tls.crt, tls.key   one client certificate (client auth) for our
#                                                   clients and KEDA (mutual TLS)
#   kafka-user-<user>    username, password         one SCRAM-SHA-512 user per client: admin (the
#                                                   create-topic Job and the exporter), producer,
#                                                   consumer, kafka-ui, keda; random passwords
#
# A private CA signs both certificates; its key stays in the output directory, never in a Secret.
# The brokers create the SCRAM users from the kafka-user-* Secrets when they format their storage,
# on first start only: run this once per cluster, before the first apply (k8s/README.md, "Secure
# Kafka").
#
#   scripts/make-kafka-secrets.sh [--out DIR] [--namespace NS] [--brokers N] [--days N]
#                                 [--cluster-domain D] [--san NAME]... [--passwords-only] [--apply]
#                                 [--force]
#
#   --out DIR          where the files go (default out/kafka-secrets, git-ignored): the keys,
#                      certificates and passwords, and secrets.yaml, the Secret manifests
#                      (`kubectl create secret ... --dry-run=client -o yaml`, no cluster needed)
#   --namespace NS     the overlay's namespace (default kafka-lag-lab): in the Secrets and the SANs
#   --brokers N        brokers to name in the SANs (default 3, the StatefulSet's replicas)
#   --san NAME         one more DNS name in the brokers' certificate (repeatable; e.g. an external
#                      name, or localhost for a broker on this machine)
#   --passwords-only   only the kafka-user-* Secrets: cert-manager makes the TLS ones
#                      (k8s/components/secure-cert-manager)
#   --apply            also `kubectl apply` them (creating the namespace if missing)
#   --force            replace what an earlier run left in DIR (a new CA and new passwords: only for
#                      a new cluster); without it a second run keeps them (and applies them again)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
out="$here/out/kafka-secrets"
namespace=kafka-lag-lab
brokers=3
days=825
domain=cluster.local
passwords_only=false
apply=false
force=false
users=(admin producer consumer kafka-ui keda)
extra_sans=()

die() { echo "make-kafka-secrets: $*" >&2; exit 1; }
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --namespace) namespace="$2"; shift 2 ;;
    --brokers) brokers="$2"; shift 2 ;;
    --days) days="$2"; shift 2 ;;
    --cluster-domain) domain="$2"; shift 2 ;;
    --san) extra_sans+=("DNS:$2"); shift 2 ;;
    --passwords-only) passwords_only=true; shift ;;
    --apply) apply=true; shift ;;
    --force) force=true; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (--help)" ;;
  esac
done
[[ "$brokers" =~ ^[1-9][0-9]*$ ]] || die "--brokers wants a positive number, not $brokers"
[[ "$namespace" =~ ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$ ]] || die "--namespace $namespace is not a namespace name"
command -v openssl >/dev/null || die "openssl is needed"
command -v kubectl >/dev/null || die "kubectl is needed (only its client: --dry-run=client)"

apply_them() {
  $apply || return 0
  kubectl create namespace "$namespace" --dry-run=client -o yaml | kubectl apply -f -
  kubectl apply -f "$out/secrets.yaml"
}
# Once per cluster: a second run keeps what the first made (the brokers were formatted with those
# passwords), and only applies it again with --apply.
if [ -e "$out/secrets.yaml" ] && ! $force; then
  echo "make-kafka-secrets: keeping $out/secrets.yaml (made before; --force makes a new CA and new passwords, which a formatted cluster does not know)" >&2
  apply_them
  exit 0
fi
mkdir -p "$out"
chmod 700 "$out"
umask 077
cd "$out"

# Certificates: RSA 2048 keys in PKCS#8 PEM ("BEGIN PRIVATE KEY"), unencrypted, which Kafka's PEM
# keystore (ssl.keystore.type=PEM), librdkafka and KEDA all read.
sign() { # name subject extensions-file
  openssl genpkey -quiet -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1.key"
  openssl req -new -key "$1.key" -subj "$2" -out "$1.csr"
  openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -set_serial "0x$(openssl rand -hex 16)" \
    -days "$days" -sha256 -extfile "$3" -out "$1.crt" 2>/dev/null
  rm -f "$1.csr" "$3"
}
if ! $passwords_only; then
  openssl genpkey -quiet -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out ca.key
  openssl req -x509 -new -key ca.key -subj "/O=kafka-lag-lab/CN=kafka-lag-lab CA" -days "$days" -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" -out ca.crt

  sans=()
  for name in kafka $(seq -f 'kafka-%g.kafka-headless' 0 $((brokers - 1))); do
    sans+=("DNS:$name" "DNS:$name.$namespace" "DNS:$name.$namespace.svc" "DNS:$name.$namespace.svc.$domain")
  done
  sans+=(${extra_sans[@]+"${extra_sans[@]}"})
  printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
    "extendedKeyUsage=serverAuth,clientAuth" "subjectAltName=$(IFS=,; echo "${sans[*]}")" >broker.ext
  sign broker "/O=kafka-lag-lab/CN=kafka.$namespace.svc" broker.ext

  printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
    "extendedKeyUsage=clientAuth" >client.ext
  sign client "/O=kafka-lag-lab/CN=kafka-lag-lab-client" client.ext
  openssl verify -CAfile ca.crt broker.crt client.crt >/dev/null
fi

# Passwords: 32 hex digits (128 random bits), nothing a SCRAM argument or a JAAS string must quote.
for user in "${users[@]}"; do
  openssl rand -hex 16 | tr -d '\n' >"password-$user"
done

secret() { kubectl create secret generic "$@" --namespace "$namespace" --dry-run=client -o yaml; }
{
  if ! $passwords_only; then
    for who in broker client; do
      secret "kafka-$who-tls" --type kubernetes.io/tls \
        --from-file=ca.crt=ca.crt --from-file=tls.crt="$who.crt" --from-file=tls.key="$who.key"
      echo ---
    done
  fi
  for user in "${users[@]}"; do
    secret "kafka-user-$user" --from-literal=username="$user" --from-file=password="password-$user"
    echo ---
  done
} | sed '/^  creationTimestamp: null$/d' >secrets.yaml

echo "make-kafka-secrets: wrote $out/secrets.yaml ($($passwords_only && echo "${#users[@]} user Secrets" || echo "2 TLS and ${#users[@]} user Secrets"), namespace $namespace)" >&2
apply_them
