// The login page: say so when the last attempt failed (/login redirects to /?failed).
if (new URLSearchParams(location.search).has("failed")) {
  document.querySelector('[data-testid="login-error"]').hidden = false;
}
