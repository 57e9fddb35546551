// Package gossip runs one member of synod's gossip pool: every master and
// every worker joins it (github.com/hashicorp/memberlist, LAN timings, port
// 7946). The pool is for discovery and the membership view, not for
// liveness decisions: a worker learns the apiserver URLs of the alive
// masters from it (Pool.APIServers, which feeds the node/apilb balancer),
// and `synod members` prints it. Node readiness in the Kubernetes API still
// follows node Leases.
//
// Each member's metadata (role, apiserver URL, node name, version) travels
// as compact JSON in memberlist's node meta (at most 512 bytes).
//
// # Encryption and key rotation
//
// With a key (Config.Key or Config.KeyFile: 16, 24 or 32 random bytes,
// base64, e.g. `head -c 32 /dev/urandom | base64 > gossip.key`) every
// packet is sealed with AES-GCM; members without the key cannot join or be
// heard. The key file may also hold a JSON array of base64 keys, the first
// being the primary (serf's keyring file format), which is how a member is
// restarted in the middle of a rotation.
//
// The keyring holds several keys: the primary one encrypts, all of them
// decrypt. Rotation is therefore three rounds, each finished on every
// member before the next starts (serf does the same with internal queries;
// here the operator or agent drives each member through Pool.InstallKey,
// Pool.UseKey and Pool.RemoveKey, or by restarting it with a key file):
//
//  1. InstallKey(new) everywhere: everyone can read the new key.
//  2. UseKey(new) everywhere: everyone writes with the new key.
//  3. RemoveKey(old) everywhere.
//
// Skipping ahead (UseKey on a member before all have installed the key)
// makes that member's packets unreadable to the others, which then see it
// as failed until they catch up.
package gossip
