// Loader hooks registered by trust_emulator_key.mjs (they run on Node's loader thread).

// Crossmint's public key for development and staging API keys, as the SDK bundles it.
const CROSSMINT_DEVELOPMENT_SIGNER = "3hSfN4dWSwgCg1uf2yytBtK6KxK3ySFKasd2h9J2vSK5";
const SDK_FILES = /\/node_modules\/@crossmint\/common-sdk-base\/dist\/[^/]+\.js$/;

let signingKey;

export function initialize(data) {
  signingKey = data.signingKey;
}

export async function load(url, context, nextLoad) {
  const result = await nextLoad(url, context);
  if (!SDK_FILES.test(url) || result.source == null) {
    return result;
  }
  const source = Buffer.from(result.source).toString("utf8");
  if (!source.includes(CROSSMINT_DEVELOPMENT_SIGNER)) {
    return result;
  }
  return { ...result, source: source.replaceAll(CROSSMINT_DEVELOPMENT_SIGNER, signingKey) };
}
