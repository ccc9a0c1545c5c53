// bnlab-report: one self-contained HTML report from run and study folders.
#include <bnlab/report/report.h>

#include "common/log_to_stderr.h"

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <filesystem>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  bnlab::apps::log_to_stderr();
  CLI::App app{"bnlab-report: write one self-contained HTML report (viewable offline) from bnlab-train run folders "
               "(metrics.jsonl) and study folders (summary.json)."};
  std::vector<std::string> dirs;
  std::string out;
  std::string title = "bnlab report";
  app.add_option("RUN_DIR", dirs, "run or study folders")->required()->check(CLI::ExistingDirectory);
  app.add_option("-o,--out", out, "the HTML file (default: <first folder>/report.html)");
  app.add_option("--title", title, "the report's title")->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    fmt::print(stderr, "bnlab-report: {}\nRun with --help for the options.\n", e.what());
    return 2;
  }
  if (out.empty()) out = (std::filesystem::path(dirs.front()) / "report.html").string();
  try {
    bnlab::report::write_report(dirs, out, title);
  } catch (const std::exception& e) {
    fmt::print(stderr, "{}\n", e.what());
    return 1;
  }
  fmt::print("report: {}\n", out);
  return 0;
}
