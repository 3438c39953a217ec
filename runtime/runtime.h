// Runtime entry points: open devices, keep their measured peaks, pick a kernel
// for a call, and run it.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "backends/common/device.h"
#include "kernels/common/op.h"

namespace ek {

struct DeviceSet {
  std::vector<std::unique_ptr<Device>> devices;
  std::vector<DeviceScan> scans;  // one per registered backend, with notes on what was (not) found
};
// Opens the devices of every registered backend (or those named in the
// comma-separated `backends`). A backend without devices reports why in its
// scan notes; nothing throws for a missing driver.
DeviceSet open_devices(const std::string& backends = "");
// The backends this build knows, registered or not: "cpu", "vulkan", "opencl".
std::vector<std::string> known_backends();

// Measured peaks are cached per device fingerprint in
// $EK_CACHE_DIR (default $XDG_CACHE_HOME/edgekernels or ~/.cache/edgekernels).
// Loads them from the cache or measures (and stores) them.
void ensure_peaks(Device& dev, bool remeasure = false, double seconds_budget = 1.5);

// ---------------------------------------------------------------- profiles

nlohmann::json profile_to_json(const DeviceProfile& p);
// Throws InvalidArgument naming the bad field.
DeviceProfile profile_from_json(const nlohmann::json& j);
DeviceProfile load_profile(const std::string& path);

// ---------------------------------------------------------------- selection

// The seam for the tuning database: given a device and a call, it may name the
// variant (and tunable values) measured fastest.
struct TunedChoice {
  std::string variant;
  Tuning tuning;
};
class TuningSource {
 public:
  virtual ~TuningSource() = default;
  virtual std::optional<TunedChoice> lookup(const DeviceProfile& p, const OpCall& call) const = 0;
};

struct SelectOptions {
  // Forces a variant. Empty: EK_FORCE_VARIANT ("op=variant,..." or "variant"),
  // then the tuning source, then the highest-priority eligible kernel.
  std::string variant;
  const TuningSource* tuning = nullptr;
};

struct Candidate {
  const KernelImpl* kernel;
  std::string ineligible;  // empty when eligible
};
// Every kernel of the call's op on the profile's backend, with eligibility.
std::vector<Candidate> candidates(const DeviceProfile& p, const OpCall& call);

struct Selection {
  const KernelImpl* kernel = nullptr;
  Tuning tuning;
  std::string why;  // "forced", "tuned", "heuristic: priority 30"
};
// Throws Unsupported listing why each candidate was rejected.
Selection select_kernel(const DeviceProfile& p, const OpCall& call, const SelectOptions& opts = {});

// Validates the call, selects, binds, executes and reads outputs back.
// Nothing is written to outputs when validation fails.
void run_op(Device& dev, const OpCall& call, const SelectOptions& opts = {});

}  // namespace ek
