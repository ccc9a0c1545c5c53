// bnlab-report: one self-contained HTML file from run and study folders.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <string>
#include <vector>

namespace bnlab::report {

/// The report's data (the JSON the page renders) for run folders (with
/// metrics.jsonl) and study folders (with summary.json and one folder per
/// run). Series are downsampled to at most 300 points per run (always
/// keeping the last step); of each layer's histograms the first and last
/// steps are kept. Throws naming the folder when it is neither a run nor a study.
nlohmann::json report_data(const std::vector<std::string>& dirs, const std::string& title);

/// The HTML page for `data`: the template with the data embedded. Viewable
/// offline (no external resources).
std::string render_report(const nlohmann::json& data);

/// report_data + render_report, written atomically to `out_path`.
void write_report(const std::vector<std::string>& dirs, const std::string& out_path,
                  const std::string& title = "bnlab report");

}  // namespace bnlab::report
