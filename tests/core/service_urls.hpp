#pragma once
// The URLs of the real services started by scripts/services.sh, from the environment. A
// missing one fails the test (never skips it) and says how to start the service.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

inline std::string service_url(const char* variable, const char* service, const char* unreachable) {
    const char* url = std::getenv(variable);
    if (!url || !*url) {
        ADD_FAILURE() << variable << " is not set; start " << service
                      << " with scripts/services.sh start and export its URL "
                         "(eval \"$(scripts/services.sh env)\")";
        return unreachable;
    }
    return url;
}

inline std::string redis_service_url() {
    return service_url("POSTROOM_REDIS_URL", "Redis", "redis://127.0.0.1:1/0");
}
