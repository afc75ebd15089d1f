// The console's static files (services/edge/console/), built into the
// binary by services/edge/embed_assets.cmake: nothing is fetched at run
// time and nothing depends on an install dir.
#pragma once

#include <vector>

#include "absl/strings/string_view.h"

namespace careloop::edge {

struct ConsoleAsset {
  absl::string_view path;        // "index.html", "app.js", ...
  absl::string_view media_type;  // with charset for text
  absl::string_view content;
};

const std::vector<ConsoleAsset>& ConsoleAssets();

}  // namespace careloop::edge
