// Preloaded with `node --import`: makes Crossmint's JS SDK trust the emulator's API key signer.
//
// The SDK checks an API key's Ed25519 signature against two constants in
// @crossmint/common-sdk-base (CROSSMINT_API_KEY_SIGNER_PUBLICKEY_STAGING and _PROD, in one
// bundled chunk). The emulator signs its own keys, so the loader hooks registered here replace
// the staging/development constant with the emulator's public key while the SDK's files are
// loaded. Nothing on disk changes: the installed copy stays as npm installed it.
import { register } from "node:module";

const signingKey = process.env.CROSSMINT_EMULATOR_SIGNING_KEY;
if (!signingKey) {
  throw new Error("CROSSMINT_EMULATOR_SIGNING_KEY is not set");
}
register("./trust_emulator_key_hooks.mjs", import.meta.url, { data: { signingKey } });
