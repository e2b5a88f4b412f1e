// Drives Crossmint's JS server SDK against the emulator; see tests/test_emulator_js_sdk.py.
//
// Reads one JSON request on stdin:
//   {"sdkDir", "url", "apiKey", "call": "getSession" | "getUser", "jwt"?, "refreshToken"?, "userId"?}
// and writes one JSON answer on stdout:
//   {"sdkVersion", "trustedSigner", "ok": true, "value": ...} or {..., "ok": false, "error": "..."}
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

function esmEntry(sdkDir, name) {
  const root = join(sdkDir, "node_modules", ...name.split("/"));
  const meta = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
  const exported = meta.exports?.["."]?.import ?? meta.exports?.import ?? meta.module;
  return { url: pathToFileURL(join(root, exported)).href, version: meta.version };
}

const request = JSON.parse(readFileSync(0, "utf8"));
const server = esmEntry(request.sdkDir, "@crossmint/server-sdk");
const base = esmEntry(request.sdkDir, "@crossmint/common-sdk-base");
const sdk = await import(server.url);
const { CROSSMINT_API_KEY_SIGNER_PUBLICKEY_STAGING } = await import(base.url);

const answer = { sdkVersion: server.version, trustedSigner: CROSSMINT_API_KEY_SIGNER_PUBLICKEY_STAGING };
try {
  const crossmint = sdk.createCrossmint({ apiKey: request.apiKey, overrideBaseUrl: request.url });
  // Newer SDKs export createCrossmintAuth; 1.2.x has CrossmintAuth.from.
  const auth = sdk.createCrossmintAuth ? sdk.createCrossmintAuth(crossmint) : sdk.CrossmintAuth.from(crossmint);
  if (request.call === "getSession") {
    answer.value = await auth.getSession({ jwt: request.jwt, refreshToken: request.refreshToken });
  } else if (request.call === "getUser") {
    answer.value = await auth.getUser(request.userId);
  } else {
    throw new Error(`unknown call ${request.call}`);
  }
  answer.ok = true;
} catch (error) {
  answer.ok = false;
  answer.error = String(error?.message ?? error);
}
process.stdout.write(JSON.stringify(answer));
