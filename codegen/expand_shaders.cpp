// Build-time tool: expands a compute-shader template into one GLSL file per
// variant, as listed in the variants file beside the template.
//
//   ek_expand_shaders VARIANTS.json OUT_DIR STAMP [--have cap1,cap2,...]
//
// VARIANTS.json (see codegen/shaders.cmake for the whole format):
//   {
//     "template": "rms_norm.comp",            // beside the json; default <stem>.comp
//     "target_env": "vulkan1.1",              // read by CMake (glslc --target-env)
//     "defines": {"COMMON": 1},               // for every variant
//     "variants": [
//       {"name": "rms_norm.subgroup.f32", "defines": {"REDUCE_SUBGROUP": 1, "X_F16": 0}},
//       {"name": "...", "requires_glslc": ["spirv_intrinsics"], "target_env": "vulkan1.3"}
//     ]
//   }
//
// Each variant whose glslc requirements are in --have becomes OUT_DIR/<name>.comp:
// the template's lines up to its #version line, then the variant's #defines,
// then a #line directive so compiler errors point into the template. Files are
// rewritten only when their text changes (so glslc reruns only where needed);
// STAMP is always touched. Every mistake in the variants file fails the build
// with the file and the variant named.
#include <cctype>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace {

using nlohmann::json;

struct Failure {
  std::string message;
};

[[noreturn]] void fail(const std::string& msg) { throw Failure{msg}; }

bool is_identifier(const std::string& s) {
  if (s.empty() || !(std::isalpha(static_cast<unsigned char>(s[0])) || s[0] == '_')) return false;
  for (char c : s)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_')) return false;
  return true;
}

// Variant names become file names and embedded names: letters, digits, '.', '_', '-'.
bool is_variant_name(const std::string& s) {
  if (s.empty() || s[0] == '.' || s[0] == '-') return false;
  for (char c : s)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-')) return false;
  return true;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot read '" + path + "'");
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void check_keys(const json& obj, const std::set<std::string>& allowed, const std::string& where) {
  if (!obj.is_object()) fail(where + " must be a JSON object");
  for (auto it = obj.begin(); it != obj.end(); ++it)
    if (!allowed.count(it.key())) {
      std::string list;
      for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
      fail(where + ": unknown key '" + it.key() + "' (allowed: " + list + ")");
    }
}

std::string define_value(const json& v, const std::string& where) {
  if (v.is_boolean()) return v.get<bool>() ? "1" : "0";
  if (v.is_number_integer()) return std::to_string(v.get<long long>());
  if (v.is_number_float()) {
    std::ostringstream o;
    o.precision(9);
    o << v.get<double>();
    return o.str();
  }
  if (v.is_string()) return v.get<std::string>();
  fail(where + " must be a string, number or boolean");
}

void add_defines(const json& obj, std::map<std::string, std::string>& out, const std::string& where) {
  if (!obj.is_object()) fail(where + " must be an object of NAME: value");
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    if (!is_identifier(it.key())) fail(where + ": '" + it.key() + "' is not a valid macro name");
    out[it.key()] = define_value(it.value(), where + "." + it.key());
  }
}

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::string cur;
  for (char c : text) {
    if (c == '\n') {
      lines.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) lines.push_back(cur);
  return lines;
}

// Index of the "#version" line; the expansion must put its defines after it.
size_t find_version_line(const std::vector<std::string>& lines, const std::string& path) {
  for (size_t i = 0; i < lines.size(); ++i) {
    size_t p = lines[i].find_first_not_of(" \t");
    if (p != std::string::npos && lines[i].compare(p, 8, "#version") == 0) return i;
  }
  fail(path + ": no #version line");
}

std::string escape_path(const std::string& p) {
  std::string out;
  for (char c : p) {
    if (c == '\\' || c == '"') out += '\\';
    out += c;
  }
  return out;
}

void write_if_changed(const std::string& path, const std::string& text) {
  {
    std::ifstream in(path, std::ios::binary);
    if (in) {
      std::ostringstream s;
      s << in.rdbuf();
      if (s.str() == text) return;
    }
  }
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  if (!out) fail("cannot write '" + path + "'");
}

std::string dir_of(const std::string& path) {
  size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

std::string stem_of(const std::string& path) {
  size_t slash = path.find_last_of('/');
  std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
  const std::string suffix = ".variants.json";
  if (name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0)
    return name.substr(0, name.size() - suffix.size());
  fail(path + ": a variants file must be named <template stem>.variants.json");
}

int run(const std::string& variants_path, const std::string& out_dir, const std::string& stamp,
        const std::set<std::string>& have) {
  json root;
  try {
    root = json::parse(read_file(variants_path));
  } catch (const json::exception& e) {
    fail(variants_path + ": " + e.what());
  }
  const std::string where = variants_path;
  check_keys(root, {"template", "target_env", "defines", "variants", "doc"}, where);
  const std::string template_name =
      root.contains("template") ? root["template"].get<std::string>() : stem_of(variants_path) + ".comp";
  const std::string template_path = dir_of(variants_path) + "/" + template_name;
  const std::vector<std::string> lines = split_lines(read_file(template_path));
  const size_t version_line = find_version_line(lines, template_path);

  std::map<std::string, std::string> common;
  if (root.contains("defines")) add_defines(root["defines"], common, where + ": defines");
  if (!root.contains("variants") || !root["variants"].is_array() || root["variants"].empty())
    fail(where + ": 'variants' must be a non-empty array");

  std::set<std::string> names;
  int written = 0;
  for (size_t vi = 0; vi < root["variants"].size(); ++vi) {
    const json& v = root["variants"][vi];
    const std::string vwhere = where + ": variants[" + std::to_string(vi) + "]";
    check_keys(v, {"name", "defines", "requires_glslc", "target_env", "doc"}, vwhere);
    if (!v.contains("name") || !v["name"].is_string()) fail(vwhere + ": missing string 'name'");
    const std::string name = v["name"].get<std::string>();
    if (!is_variant_name(name)) fail(vwhere + ": name '" + name + "' may hold only letters, digits, '.', '_', '-'");
    if (!names.insert(name).second) fail(vwhere + ": duplicate variant name '" + name + "'");

    bool buildable = true;
    if (v.contains("requires_glslc")) {
      if (!v["requires_glslc"].is_array()) fail(vwhere + ": requires_glslc must be an array of names");
      for (const json& r : v["requires_glslc"]) {
        if (!r.is_string()) fail(vwhere + ": requires_glslc must be an array of names");
        if (!have.count(r.get<std::string>())) buildable = false;
      }
    }
    std::map<std::string, std::string> defines = common;
    if (v.contains("defines")) add_defines(v["defines"], defines, vwhere + ": defines");
    if (!buildable) continue;  // CMake skips it too (glslc lacks an extension it needs)

    std::ostringstream text;
    for (size_t i = 0; i <= version_line; ++i) text << lines[i] << '\n';
    text << "#extension GL_GOOGLE_cpp_style_line_directive : require\n";
    text << "// Generated by ek_expand_shaders from " << template_name << ", variant " << name
         << ". Do not edit.\n";
    for (const auto& kv : defines) text << "#define " << kv.first << ' ' << kv.second << '\n';
    text << "#line " << version_line + 2 << " \"" << escape_path(template_path) << "\"\n";
    for (size_t i = version_line + 1; i < lines.size(); ++i) text << lines[i] << '\n';
    write_if_changed(out_dir + "/" + name + ".comp", text.str());
    ++written;
  }
  std::ofstream(stamp, std::ios::trunc) << written << " variants\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4 && !(argc == 6 && std::string(argv[4]) == "--have")) {
    std::fprintf(stderr, "usage: ek_expand_shaders VARIANTS.json OUT_DIR STAMP [--have cap1,cap2,...]\n");
    return 2;
  }
  std::set<std::string> have;
  if (argc == 6) {
    std::stringstream ss(argv[5]);
    for (std::string cap; std::getline(ss, cap, ',');)
      if (!cap.empty()) have.insert(cap);
  }
  try {
    return run(argv[1], argv[2], argv[3], have);
  } catch (const Failure& f) {
    std::fprintf(stderr, "ek_expand_shaders: error: %s\n", f.message.c_str());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ek_expand_shaders: error: %s: %s\n", argv[1], e.what());
    return 1;
  }
}
