// Runs in every page of the app's origin (a Playwright init script), after the bundle:
// Crossmint's browser auth client, set up as CrossmintAuthProvider sets it up, with the
// app's refresh and logout routes. What the SDK does is recorded in window.__sdk.
(() => {
  const config = window.__crossmintTest;
  if (!config || location.origin !== config.origin) {
    return;
  }
  const sdk = (window.__sdk = { refreshes: [], logouts: 0, errors: [] });
  const consoleError = console.error.bind(console);
  console.error = (...args) => {
    sdk.errors.push(args.map(String).join(" "));
    consoleError(...args);
  };
  const crossmint = CrossmintSDK.createCrossmint({ apiKey: config.apiKey });
  window.__auth = CrossmintSDK.CrossmintAuth.from(crossmint, {
    refreshRoute: "/refresh",
    logoutRoute: "/logout",
    callbacks: {
      onTokenRefresh: (material) => {
        sdk.refreshes.push(material);
      },
      onLogout: () => {
        sdk.logouts += 1;
      },
    },
  });
})();
