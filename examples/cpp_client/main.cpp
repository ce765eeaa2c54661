// qwen_edge_client: stream one generation from a qwen_edge.v1 server (robot integration example).
//
//   qwen_edge_client --server unix:/run/qwen-edge/grpc.sock --prompt "a red cup on a table"
//       --size 512x512 --steps 8 --seed 42 --out cup.png --previews previews/   (one line)
//
// Prints queue position and per-step progress, writes every preview it receives into
// --previews, reassembles the final image from its <= 1 MiB chunks and writes it to --out.
// Security: --ca (TLS roots; implies TLS), --cert/--key (mutual TLS), --token-file or
// $QWEN_EDGE_TOKEN (bearer token; refused over plaintext TCP to a non-loopback host).
// Exit codes: 0 done, 1 RPC error (code and message printed), 2 usage / local error.

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <string>

#include "edge_server/_proto/imagegen.grpc.pb.h"

namespace v1 = qwen_edge::v1;
namespace fs = std::filesystem;

namespace {

struct Options {
  std::string server = "127.0.0.1:50051";
  std::string prompt;
  std::string negative_prompt;
  std::string out = "out.png";
  std::string previews;
  std::string preview_format = "jpeg";
  std::string ca, cert, key, token_file;
  int width = 0, height = 0, steps = 0, num_images = 1;
  bool has_seed = false;
  uint64_t seed = 0;
  double timeout_s = 0;
  bool wait = false;
};

void usage() {
  std::cerr << "usage: qwen_edge_client --prompt TEXT [--server ADDR] [--out FILE]\n"
               "       [--size WxH] [--steps N] [--seed N] [--negative-prompt TEXT] [-n N]\n"
               "       [--previews DIR] [--preview-format jpeg|png|webp|raw_latent]\n"
               "       [--ca PEM] [--cert PEM --key PEM] [--token-file F] [--timeout S] [--wait]\n";
}

const char* code_name(grpc::StatusCode c) {
  static const char* names[] = {"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT",
                                "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
                                "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
                                "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL",
                                "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"};
  int i = static_cast<int>(c);
  return i >= 0 && i <= 16 ? names[i] : "?";
}

bool read_file(const std::string& path, std::string* out) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return false;
  std::ostringstream ss;
  ss << f.rdbuf();
  *out = ss.str();
  return true;
}

bool write_file(const fs::path& path, const std::string& data) {
  if (path.has_parent_path()) {
    std::error_code ec;
    fs::create_directories(path.parent_path(), ec);
  }
  std::ofstream f(path, std::ios::binary);
  f.write(data.data(), static_cast<std::streamsize>(data.size()));
  return static_cast<bool>(f);
}

std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r\n"), e = s.find_last_not_of(" \t\r\n");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

// First non-comment line of a token file.
std::string read_token(const std::string& path) {
  std::ifstream f(path);
  std::string line;
  while (std::getline(f, line)) {
    line = trim(line.substr(0, line.find('#')));
    if (!line.empty()) return line;
  }
  return "";
}

bool is_local(const std::string& target) {
  if (target.rfind("unix:", 0) == 0) return true;
  std::string host = target.substr(0, target.rfind(':'));
  if (!host.empty() && host.front() == '[') host = host.substr(1, host.size() - 2);
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

bool parse_args(int argc, char** argv, Options* o) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&](std::string* v) {
      if (i + 1 >= argc) return false;
      *v = argv[++i];
      return true;
    };
    std::string v;
    if (a == "--wait") { o->wait = true; continue; }
    if (a == "-h" || a == "--help") return false;
    if (!next(&v)) { std::cerr << "missing value for " << a << "\n"; return false; }
    try {
      if (a == "--server") o->server = v;
      else if (a == "--prompt") o->prompt = v;
      else if (a == "--negative-prompt") o->negative_prompt = v;
      else if (a == "--out" || a == "-o") o->out = v;
      else if (a == "--previews") o->previews = v;
      else if (a == "--preview-format") o->preview_format = v;
      else if (a == "--ca") o->ca = v;
      else if (a == "--cert") o->cert = v;
      else if (a == "--key") o->key = v;
      else if (a == "--token-file") o->token_file = v;
      else if (a == "--steps") o->steps = std::stoi(v);
      else if (a == "-n" || a == "--num-images") o->num_images = std::stoi(v);
      else if (a == "--timeout") o->timeout_s = std::stod(v);
      else if (a == "--seed") { o->seed = std::stoull(v); o->has_seed = true; }
      else if (a == "--size") {
        size_t x = v.find_first_of("xX");
        if (x == std::string::npos) { std::cerr << "--size wants WxH\n"; return false; }
        o->width = std::stoi(v.substr(0, x));
        o->height = std::stoi(v.substr(x + 1));
      } else { std::cerr << "unknown option " << a << "\n"; return false; }
    } catch (const std::exception&) {
      std::cerr << "bad value for " << a << ": " << v << "\n";
      return false;
    }
  }
  if (o->prompt.empty()) { std::cerr << "--prompt is required\n"; return false; }
  return true;
}

const char* preview_ext(v1::PreviewFormat f) {
  switch (f) {
    case v1::PREVIEW_FORMAT_PNG: return ".png";
    case v1::PREVIEW_FORMAT_WEBP: return ".webp";
    case v1::PREVIEW_FORMAT_RAW_LATENT: return ".f16";
    default: return ".jpg";
  }
}

std::string image_path(const std::string& out, int index, int count) {
  if (count <= 1) return out;
  fs::path p(out);
  return (p.parent_path() / (p.stem().string() + "-" + std::to_string(index) +
                             p.extension().string())).string();
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (!parse_args(argc, argv, &o)) { usage(); return 2; }

  // ---- channel: TLS / mTLS or plaintext (unix sockets, loopback) ----
  std::shared_ptr<grpc::ChannelCredentials> creds;
  if (!o.ca.empty() || !o.cert.empty()) {
    grpc::SslCredentialsOptions ssl;
    if ((!o.ca.empty() && !read_file(o.ca, &ssl.pem_root_certs)) ||
        (!o.cert.empty() && !read_file(o.cert, &ssl.pem_cert_chain)) ||
        (!o.key.empty() && !read_file(o.key, &ssl.pem_private_key))) {
      std::cerr << "cannot read the TLS files\n";
      return 2;
    }
    creds = grpc::SslCredentials(ssl);
  } else {
    creds = grpc::InsecureChannelCredentials();
  }
  std::string token = o.token_file.empty() ? "" : read_token(o.token_file);
  if (token.empty() && o.token_file.empty() && std::getenv("QWEN_EDGE_TOKEN"))
    token = std::getenv("QWEN_EDGE_TOKEN");
  if (!token.empty() && o.ca.empty() && o.cert.empty() && !is_local(o.server)) {
    std::cerr << "refusing to send the token in clear text to " << o.server << "\n";
    return 2;
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(8 * 1024 * 1024);
  auto channel = grpc::CreateCustomChannel(o.server, creds, args);
  auto stub = v1::ImageGeneration::NewStub(channel);

  auto prepare = [&](grpc::ClientContext* ctx) {
    if (!token.empty()) ctx->AddMetadata("authorization", "Bearer " + token);
    if (o.timeout_s > 0)
      ctx->set_deadline(std::chrono::system_clock::now() +
                        std::chrono::milliseconds(static_cast<int64_t>(o.timeout_s * 1000)));
    ctx->set_wait_for_ready(o.wait);
  };

  // ---- what is loaded ----
  v1::ModelInfo info;
  {
    grpc::ClientContext ctx;
    prepare(&ctx);
    grpc::Status st = stub->GetModelInfo(&ctx, v1::GetModelInfoRequest(), &info);
    if (!st.ok()) {
      std::cerr << "GetModelInfo failed: " << code_name(st.error_code()) << ": "
                << st.error_message() << "\n";
      return 1;
    }
    std::cerr << "model " << info.name() << " (default " << info.default_steps() << " steps, "
              << info.isa() << ", " << info.threads() << " threads, server " << info.version()
              << ")\n";
  }

  // ---- the request ----
  v1::GenerateRequest req;
  req.set_prompt(o.prompt);
  req.set_negative_prompt(o.negative_prompt);
  req.set_width(o.width);
  req.set_height(o.height);
  req.set_steps(o.steps);
  req.set_num_images(o.num_images);
  if (o.has_seed) req.set_seed(o.seed);
  req.set_output_format(v1::IMAGE_FORMAT_PNG);
  if (!o.previews.empty()) {
    std::map<std::string, v1::PreviewFormat> fmts = {
        {"jpeg", v1::PREVIEW_FORMAT_JPEG}, {"png", v1::PREVIEW_FORMAT_PNG},
        {"webp", v1::PREVIEW_FORMAT_WEBP}, {"raw_latent", v1::PREVIEW_FORMAT_RAW_LATENT}};
    auto it = fmts.find(o.preview_format);
    if (it == fmts.end()) { usage(); return 2; }
    req.mutable_preview()->set_format(it->second);
  }

  grpc::ClientContext ctx;
  prepare(&ctx);
  auto t0 = std::chrono::steady_clock::now();
  std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> reader(stub->Generate(&ctx, req));
  v1::GenerateResponse msg;
  std::map<uint32_t, std::string> images;
  std::map<uint32_t, uint64_t> seeds;
  int previews = 0, steps_seen = 0, n_images = 1;
  bool done = false;
  v1::Done summary;
  while (reader->Read(&msg)) {
    switch (msg.event_case()) {
      case v1::GenerateResponse::kQueued:
        if (msg.queued().position() > 0)
          std::cerr << "queued: position " << msg.queued().position() << "\n";
        break;
      case v1::GenerateResponse::kStarted: {
        const auto& s = msg.started();
        n_images = static_cast<int>(s.num_images());
        std::cerr << "started " << s.width() << "x" << s.height() << ", " << s.steps()
                  << " steps, seed " << s.seed() << " (queued " << s.queue_ms() << " ms)\n";
        break;
      }
      case v1::GenerateResponse::kStep: {
        const auto& s = msg.step();
        ++steps_seen;
        std::fprintf(stderr, "image %u step %u/%u sigma %.4f eta %.1fs\n", s.image_index() + 1,
                     s.step(), s.total_steps(), s.sigma(), s.eta_ms() / 1000.0);
        const std::string& data = s.preview_image().empty() ? s.raw_latent() : s.preview_image();
        if (!data.empty() && !o.previews.empty()) {
          char name[64];
          std::snprintf(name, sizeof name, "img%u-step%03u%s", s.image_index(), s.step(),
                        preview_ext(s.preview_format()));
          if (!write_file(fs::path(o.previews) / name, data)) {
            std::cerr << "cannot write preview " << name << "\n";
            return 2;
          }
          ++previews;
        }
        break;
      }
      case v1::GenerateResponse::kImageChunk: {
        const auto& c = msg.image_chunk();
        std::string& buf = images[c.image_index()];
        if (c.offset() != buf.size()) {
          std::cerr << "chunk out of order\n";
          return 2;
        }
        buf += c.data();
        seeds[c.image_index()] = c.seed();
        break;
      }
      case v1::GenerateResponse::kDone:
        done = true;
        summary = msg.done();
        break;
      default:
        break;  // a newer server's event: ignore
    }
  }
  grpc::Status st = reader->Finish();
  if (!st.ok()) {
    std::cerr << "Generate failed: " << code_name(st.error_code()) << ": " << st.error_message()
              << "\n";
    return 1;
  }
  if (!done) {
    std::cerr << "stream ended without Done\n";
    return 1;
  }
  for (const auto& [index, data] : images) {
    std::string path = image_path(o.out, static_cast<int>(index), n_images);
    if (!write_file(path, data)) {
      std::cerr << "cannot write " << path << "\n";
      return 2;
    }
    std::cerr << "wrote " << path << " (" << data.size() << " bytes, seed " << seeds[index]
              << ")\n";
  }
  double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::fprintf(stderr,
               "done: %d steps, %d previews, %.3f s wall; engine %.1f ms (prompt %.1f, "
               "denoise %.1f, vae %.1f), server %.1f ms (queue %.1f, image encode %.1f)%s\n",
               steps_seen, previews, wall, summary.timings().engine_ms(),
               summary.timings().prompt_encode_ms(), summary.timings().denoise_ms(),
               summary.timings().vae_decode_ms(), summary.timings().total_ms(),
               summary.timings().queue_ms(), summary.timings().image_encode_ms(),
               summary.prompt_truncated() ? " [prompt truncated]" : "");
  return 0;
}
