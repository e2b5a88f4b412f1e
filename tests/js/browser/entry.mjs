// The bundle's entry: Crossmint's browser auth client, as an app imports it.
// Bundled by tests/e2e/test_browser_sdk.py with esbuild into an IIFE (window.CrossmintSDK).
export { CrossmintAuth, createCrossmint } from "@crossmint/client-sdk-auth";
