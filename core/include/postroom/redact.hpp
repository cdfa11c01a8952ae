#pragma once
// The one redaction rule for text that names a server with its credentials: broker URLs
// (kafka://, redis://), database URLs (postgresql://, sqlite://) and libpq conninfo strings
// (host=... password=...). Every error, log line, repr and command-line output that shows
// such a URL shows it through redacted_url(); the Python package and the GUI call the same
// functions.
//
// What is replaced by "***":
// - the password of the userinfo: everything after the first ':' that follows "://" (or the
//   start, when "://" is missing) up to the last '@' after it. The user is kept. A password
//   holding '@', ':' or '/' is covered, and so is a malformed URL: the rule needs no parse.
//   An '@' further on (in a query value) makes the rule hide more than the password, never
//   less.
// - the value of every query parameter or conninfo keyword whose name contains "pass",
//   "secret" or "token" (any case): ?password=..., &sslpassword=..., password='...'.
// Everything else (scheme, user, hosts, ports, path, other parameters) is kept.
//
// Thread-safety: pure functions.

#include <string>
#include <string_view>

namespace postroom {

// `url` with its password(s) replaced by "***", e.g. "redis://bob:***@host:6379/0".
std::string redacted_url(std::string_view url);

// `text` with every password that `url` holds replaced by "***", as written in the URL and
// percent-decoded: for messages of a library (libpq) that may quote part of the URL it was
// given. Passwords are the ones redacted_url() hides.
std::string redact_secrets(std::string_view text, std::string_view url);

}  // namespace postroom
