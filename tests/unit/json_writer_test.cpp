#include <doctest/doctest.h>

#include <charconv>
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <simdjson.h>

#include "core/json_writer.hpp"

namespace json = sluice::json;

namespace {

// Reference values from V8 (Node 20), printed by the script reproduced at the end of this
// file (node gen.js), whose heart is:
//   strings: out = JSON.stringify(new TextDecoder('utf-8', {ignoreBOM: true}).decode(bytes))
//            valid = new TextDecoder('utf-8', {fatal: true}).decode(...) does not throw
//   doubles: String(x) for x the double with the given bits (fixed cases, then xorshift64 bits)
struct StringCase {
  const char* input_hex;
  const char* json_hex;  // the UTF-8 bytes of JSON.stringify's output
  bool valid_utf8;
};
constexpr StringCase kStringCases[] = {
    {"", "2222", true},
    {"41", "224122", true},
    {"22", "225c2222", true},
    {"5c", "225c5c22", true},
    {"2f", "222f22", true},
    {"7f", "227f22", true},
    {"412242", "22415c224222", true},
    {"5c6e", "225c5c6e22", true},
    {"00", "225c753030303022", true},
    {"01", "225c753030303122", true},
    {"02", "225c753030303222", true},
    {"03", "225c753030303322", true},
    {"04", "225c753030303422", true},
    {"05", "225c753030303522", true},
    {"06", "225c753030303622", true},
    {"07", "225c753030303722", true},
    {"08", "225c6222", true},
    {"09", "225c7422", true},
    {"0a", "225c6e22", true},
    {"0b", "225c753030306222", true},
    {"0c", "225c6622", true},
    {"0d", "225c7222", true},
    {"0e", "225c753030306522", true},
    {"0f", "225c753030306622", true},
    {"10", "225c753030313022", true},
    {"11", "225c753030313122", true},
    {"12", "225c753030313222", true},
    {"13", "225c753030313322", true},
    {"14", "225c753030313422", true},
    {"15", "225c753030313522", true},
    {"16", "225c753030313622", true},
    {"17", "225c753030313722", true},
    {"18", "225c753030313822", true},
    {"19", "225c753030313922", true},
    {"1a", "225c753030316122", true},
    {"1b", "225c753030316222", true},
    {"1c", "225c753030316322", true},
    {"1d", "225c753030316422", true},
    {"1e", "225c753030316522", true},
    {"1f", "225c753030316622", true},
    {"c3a9", "22c3a922", true},
    {"e4b8ad", "22e4b8ad22", true},
    {"f09f9880", "22f09f988022", true},
    {"efbfbf", "22efbfbf22", true},
    {"f48fbfbf", "22f48fbfbf22", true},
    {"e280a8e280a9", "22e280a8e280a922", true},
    {"efbbbf", "22efbbbf22", true},
    {"c280", "22c28022", true},
    {"dfbf", "22dfbf22", true},
    {"e0a080", "22e0a08022", true},
    {"80", "22efbfbd22", false},
    {"bf", "22efbfbd22", false},
    {"c0af", "22efbfbdefbfbd22", false},
    {"c1bf", "22efbfbdefbfbd22", false},
    {"e08080", "22efbfbdefbfbdefbfbd22", false},
    {"eda080", "22efbfbdefbfbdefbfbd22", false},
    {"edbfbf", "22efbfbdefbfbdefbfbd22", false},
    {"f4908080", "22efbfbdefbfbdefbfbdefbfbd22", false},
    {"f5", "22efbfbd22", false},
    {"ff", "22efbfbd22", false},
    {"fe", "22efbfbd22", false},
    {"e282", "22efbfbd22", false},
    {"e282ac", "22e282ac22", true},
    {"e28241", "22efbfbd4122", false},
    {"f09f98", "22efbfbd22", false},
    {"f09f9841", "22efbfbd4122", false},
    {"f0808080", "22efbfbdefbfbdefbfbdefbfbd22", false},
    {"c3", "22efbfbd22", false},
    {"41c3", "2241efbfbd22", false},
    {"c341", "22efbfbd4122", false},
    {"f8888080", "22efbfbdefbfbdefbfbdefbfbd22", false},
    {"e0a0", "22efbfbd22", false},
    {"edb080", "22efbfbdefbfbdefbfbd22", false},
    {"f09fe282ac", "22efbfbde282ac22", false},
    {"22e282ac0a5cff0041", "225c22e282ac5c6e5c5cefbfbd5c75303030304122", false},
};

struct DoubleCase {
  std::uint64_t bits;
  const char* js;  // Number#toString: shortest round-trip digits, JavaScript's layout
};
constexpr DoubleCase kDoubleCases[] = {
    {0x3fb999999999999aULL, "0.1"},
    {0x3fc999999999999aULL, "0.2"},
    {0x3fd3333333333333ULL, "0.3"},
    {0x3fd5555555555555ULL, "0.3333333333333333"},
    {0x3fe5555555555555ULL, "0.6666666666666666"},
    {0x3ff0000000000000ULL, "1"},
    {0x4059000000000000ULL, "100"},
    {0x430c6bf526340000ULL, "1000000000000000"},
    {0x4341c37937e08000ULL, "10000000000000000"},
    {0x4376345785d8a000ULL, "100000000000000000"},
    {0x4415af1d78b58c40ULL, "100000000000000000000"},
    {0x444b1ae4d6e2ef50ULL, "1e+21"},
    {0x4480f0cf064dd592ULL, "1e+22"},
    {0x419d6f34547df3b6ULL, "123456789.123"},
    {0x3ee4f8b588e368f1ULL, "0.00001"},
    {0x3eb0c6f7a0b5ed8dULL, "0.000001"},
    {0x3e7ad7f29abcaf48ULL, "1e-7"},
    {0x0000000000000001ULL, "5e-324"},
    {0x0010000000000000ULL, "2.2250738585072014e-308"},
    {0x7fefffffffffffffULL, "1.7976931348623157e+308"},
    {0x4340000000000000ULL, "9007199254740992"},
    {0x4011666666666666ULL, "4.35"},
    {0x3f201f31f46ed246ULL, "0.000123"},
    {0x41b1de784a000000ULL, "299792458"},
    {0xbff8000000000000ULL, "-1.5"},
    {0xbf50624dd2f1a9fcULL, "-0.001"},
    {0x41d9967d8147e6b4ULL, "1717171717.123456"},
    {0x400921f9f01b866eULL, "3.14159"},
    {0x43e0000000000000ULL, "9223372036854776000"},
    {0x43f0000000000000ULL, "18446744073709552000"},
    {0xdc1b77ae0bf34dadULL, "-4.9911105725155504e+135"},
    {0x64f0eeb9026e6076ULL, "1.715373926431966e+178"},
    {0x7b07ce91e5906136ULL, "4.4251604027143375e+284"},
    {0x305f050c368dcc74ULL, "1.0715660391465826e-75"},
    {0x2ceb16e0a1c54aecULL, "2.5973481493288907e-92"},
    {0x97101dce4e7bfb79ULL, "-1.3475090132806154e-197"},
    {0x9ad2e144d6e8f2cfULL, "-1.81996730402717e-179"},
    {0xd9aa792e1af470eaULL, "-8.750186241947517e+123"},
    {0xddaa4e85b0d6e28bULL, "-1.603964615428183e+143"},
    {0x8f8ea9d349428d8eULL, "-9.643915712060552e-234"},
    {0x08f474ffb8e8ab15ULL, "1.5860846119992697e-265"},
    {0x2ead854756d71f03ULL, "7.597954524892738e-84"},
    {0x55bc79f8ada711fdULL, "1.0204796945730538e+105"},
    {0x0e1fc49bd63b809eULL, "1.1910593176322935e-240"},
    {0xb92199e83f5a101fULL, "-1.694933913128696e-33"},
    {0xc5765079fc5d43ffULL, "-4.3162252145519944e+26"},
    {0x353cfc387dfae6b8ULL, "3.0261999441573203e-52"},
    {0xa32edabf5585bd75ULL, "-3.238696681491661e-139"},
    {0xfc5639b16b714b4fULL, "-8.663725837306241e+290"},
    {0x92fb2dcfc8ae9a19ULL, "-3.0797526843217145e-217"},
    {0x544b0ec76d00616dULL, "1.15589923121874e+98"},
    {0xbcbb9b7e9a319aefULL, "-3.831296467316889e-16"},
    {0x0f1a50d59c0aa21aULL, "6.466053826432699e-236"},
    {0x80ae2120826571deULL, "-2.1452846540129615e-305"},
    {0x0e1ecd02ed7c0cbdULL, "1.1547975125429853e-240"},
    {0x0d0981e8c1fa7be4ULL, "7.296267179458751e-246"},
    {0xdc86b3d3cdbdf613ULL, "-5.2803264785067434e+137"},
    {0x6d0844c269e7693fULL, "1.6732138965686944e+217"},
    {0x3681da7f6993082dULL, "3.909076791246025e-46"},
    {0x5b928e2c987d857dULL, "1.3170664051174186e+133"},
    {0x6c716e1e6ced8137ULL, "2.347135155778617e+214"},
    {0xccb870213498f7f5ULL, "-3.92703626520675e+61"},
    {0x9f07b27a78869b5aULL, "-3.3710794864173703e-159"},
    {0xb0ba91e47f6200ecULL, "-5.874229071700385e-74"},
    {0xc72b4c36d0db7fedULL, "-7.086891063466728e+34"},
    {0x35f305b0c0fc9252ULL, "8.134710481112139e-49"},
    {0x7ac78fb373ffbff6ULL, "2.7371952383912e+283"},
    {0x8e39b81de71b7d09ULL, "-3.857101171397437e-240"},
    {0x59a69ba126cd29b3ULL, "7.472552783215012e+123"},
    {0xbfcbffff0cbcbf20ULL, "-0.21874988672197393"},
    {0x2d1ce28856d20e5eULL, "2.215603731797175e-91"},
    {0x572a15ed48b3fdc2ULL, "7.841697833625344e+111"},
    {0x32b911499417aab9ULL, "2.3803041954013153e-64"},
    {0x17a8ec88e0da0bacULL, "1.0669643833474769e-194"},
    {0x0cc88eab2f9ad4bbULL, "4.3902997915267284e-247"},
    {0xbc3a5b419a43afd2ULL, "-1.4287870889761718e-18"},
    {0x6f0f3414c47c9c0dULL, "9.239942182940311e+226"},
    {0xe71a7567edb8c675ULL, "-4.6049449625872434e+188"},
    {0x63674cf841ee8ab9ULL, "7.034866163903114e+170"},
    {0xe375837da840d9ecULL, "-1.2990664698521692e+171"},
    {0x578eb22e1ea5a35fULL, "5.905686629582816e+113"},
    {0x4efa582ee029dfd9ULL, "2.9091650704676072e+72"},
    {0xf3b363e938295a26ULL, "-2.1692042628035588e+249"},
    {0x2e3a4ef3496f4112ULL, "5.2900001119406624e-86"},
    {0xb809d78e2a2f9b10ULL, "-9.49285634690637e-39"},
    {0x46217f104eb30026ULL, "6.93101536724741e+29"},
    {0x8947b5fefda6afa6ULL, "-5.882775229507853e-264"},
    {0x4a3ae29b2af0cb79ULL, "3.9292734840969675e+49"},
    {0xbfd0273b10a6d4afULL, "-0.2523944532980051"},
    {0xed0a00eb302b52c6ULL, "-1.7928344098460697e+217"},
    {0x3c0a45ad6d0175e3ULL, "1.7802719962921167e-19"},
    {0x5bec25a986aa6fc8ULL, "6.393254796400403e+134"},
    {0x904bc2dda0ebc917ULL, "-3.576279648101772e-230"},
    {0x459ae6d82ef0bb45ULL, "2.0814210227308495e+27"},
    {0xd8f30b16630d2b73ULL, "-3.0734116139155754e+120"},
    {0x7110b72632258de5ULL, "4.251812196359382e+236"},
    {0x543b14bc79e21fbeULL, "5.7844666878803994e+97"},
    {0xb3afb674d263f401ULL, "-9.867437071726851e-60"},
    {0x992a5514fae813a9ULL, "-1.891221305366931e-187"},
    {0x65950d0578f009ceULL, "2.18377227571136e+181"},
    {0x5703572bfb805a5dULL, "1.4535047277321816e+111"},
    {0xf58b6a5f9c786da9ULL, "-1.6465799069278203e+258"},
    {0xa837793e9e8ad732ULL, "-5.957466131998648e-115"},
    {0x50eabc7287dc4e1cULL, "6.340262899598194e+81"},
    {0x4dca1d57ff03f180ULL, "5.500381791581099e+66"},
    {0x4899ff11c2f79663ULL, "5.661506902655086e+41"},
    {0x16166c76ad45818fULL, "2.860815981281152e-202"},
    {0xcb74ca30b3d6894cULL, "-3.186028444038842e+55"},
    {0x217355871886f75eULL, "1.5120492207884386e-147"},
    {0x28a1e2393381ed30ULL, "5.809632407259761e-113"},
    {0x074c31b6d9efa2eaULL, "1.6286721492574822e-273"},
    {0xbec4688d35b7872fULL, "-0.0000024328714240831068"},
    {0xf8fd0016351ac3e1ULL, "-6.275367084072634e+274"},
    {0x2a3e36405bf02e26ULL, "3.29321318659287e-105"},
    {0x4fa794552d7c87faULL, "5.332638378877033e+75"},
    {0x6b65fa68c812c075ULL, "2.2579710060776677e+209"},
    {0xb0d838d4f45658b5ULL, "-2.1420571626728534e-73"},
    {0xf088256e71b67944ULL, "-1.1995980149915995e+234"},
    {0xb4d1bf49868fc4b6ULL, "-2.89514964136048e-54"},
    {0x7f30634d239b36bfULL, "4.495301479005006e+304"},
    {0x9adf073ca7e24f12ULL, "-2.9910257010919965e-179"},
    {0xbf023d5f71c40f0cULL, "-0.00003478953860461099"},
    {0xf8daff4ab7e1c412ULL, "-1.4604790788453035e+274"},
    {0x3bb60a1f6449431aULL, "4.667054448216033e-21"},
    {0xe1b6cc3fce8a571cULL, "-5.128277780879042e+162"},
    {0x974be547500504b2ULL, "-1.865902080785903e-196"},
    {0x788637bdbb04623bULL, "3.756003170106989e+272"},
    {0x78b479878553843fULL, "2.769071305261943e+273"},
    {0xf614dc4037d1ccf7ULL, "-6.414723702314457e+260"},
    {0xab5917a81f0fb2aeULL, "-7.17007679825171e-100"},
    {0x3f50624dd2f1a9fcULL, "0.001"},
    {0x3f7cac083126e979ULL, "0.007"},
    {0x3ff3be76c8b43958ULL, "1.234"},
    {0x4058ffef9db22d0eULL, "99.999"},
    {0x40fe240c9fbe76c9ULL, "123456.789"},
};

std::string from_hex(std::string_view hex) {
  std::string out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<char>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
  }
  return out;
}

std::string to_hex(std::string_view bytes) {
  std::string out;
  constexpr char kHex[] = "0123456789abcdef";
  for (unsigned char c : bytes) {
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 15]);
  }
  return out;
}

double from_bits(std::uint64_t bits) {
  double d;
  std::memcpy(&d, &bits, sizeof d);
  return d;
}

std::uint64_t to_bits(double d) {
  std::uint64_t b;
  std::memcpy(&b, &d, sizeof b);
  return b;
}

// A decimal number's significant digits and the power of ten of its last digit, layout aside:
// "1e+21", "1000000000000000000000" and "1.0e21" all give {"1", 21}.
struct Decimal {
  std::string digits;
  int exponent = 0;
  bool negative = false;
  bool operator==(const Decimal&) const = default;
};

Decimal normalise(std::string_view text) {
  Decimal d;
  std::size_t i = 0;
  if (i < text.size() && text[i] == '-') d.negative = true, ++i;
  int exp10 = 0;
  bool after_point = false;
  for (; i < text.size() && text[i] != 'e' && text[i] != 'E'; ++i) {
    if (text[i] == '.') {
      after_point = true;
      continue;
    }
    d.digits.push_back(text[i]);
    if (after_point) --exp10;
  }
  if (i < text.size()) exp10 += std::stoi(std::string(text.substr(i + 1)));
  while (!d.digits.empty() && d.digits.front() == '0') d.digits.erase(0, 1);
  while (!d.digits.empty() && d.digits.back() == '0') d.digits.pop_back(), ++exp10;
  d.exponent = d.digits.empty() ? 0 : exp10;
  return d;
}

// Parses `text` as one JSON value with simdjson (an independent parser).
simdjson::dom::element parse(simdjson::dom::parser& parser, const std::string& text) {
  simdjson::dom::element el;
  const auto err = parser.parse(text).get(el);
  INFO("text: ", text);
  REQUIRE(err == simdjson::SUCCESS);
  return el;
}

}  // namespace

TEST_CASE("strings are escaped as JSON.stringify does, ill-formed UTF-8 as TextDecoder does") {
  for (const StringCase& c : kStringCases) {
    const std::string input = from_hex(c.input_hex);
    std::string out = "prefix";
    json::append_string(out, input);
    INFO("input bytes: ", std::string(c.input_hex));
    CHECK(out.substr(0, 6) == "prefix");
    CHECK(to_hex(out.substr(6)) == c.json_hex);
    CHECK(json::is_valid_utf8(input) == c.valid_utf8);
  }
}

TEST_CASE("is_valid_utf8 agrees with simdjson on random bytes") {
  std::mt19937_64 rng(12345);
  for (int round = 0; round < 20000; ++round) {
    std::string s(rng() % 12, '\0');
    for (char& ch : s) {
      // Mostly bytes around the UTF-8 boundaries, so that sequences are often almost valid.
      constexpr unsigned char kInteresting[] = {0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF,
                                                0xC0, 0xC1, 0xC2, 0xDF, 0xE0, 0xE1, 0xEC, 0xED, 0xEE,
                                                0xEF, 0xF0, 0xF1, 0xF3, 0xF4, 0xF5, 0xFF};
      ch = static_cast<char>(kInteresting[rng() % sizeof kInteresting]);
    }
    INFO("bytes: ", to_hex(s));
    REQUIRE(json::is_valid_utf8(s) == simdjson::validate_utf8(s.data(), s.size()));
    // Whatever the input, the output is valid UTF-8 and valid JSON.
    std::string out;
    json::append_string(out, s);
    REQUIRE(simdjson::validate_utf8(out.data(), out.size()));
    simdjson::dom::parser parser;
    std::string_view back;
    REQUIRE(parse(parser, out).get_string().get(back) == simdjson::SUCCESS);
    if (json::is_valid_utf8(s)) CHECK(back == s);
  }
}

TEST_CASE("well-formed UTF-8 text reads back unchanged") {
  std::mt19937 rng(7);
  simdjson::dom::parser parser;
  for (int round = 0; round < 2000; ++round) {
    std::string s;
    const int n = static_cast<int>(rng() % 20);
    for (int k = 0; k < n; ++k) {
      // Code points of every UTF-8 length, control characters and the escaped ASCII included.
      std::uint32_t cp;
      switch (rng() % 5) {
        case 0: cp = rng() % 0x80; break;
        case 1: cp = 0x80 + rng() % (0x800 - 0x80); break;
        case 2: cp = 0x800 + rng() % (0x10000 - 0x800); break;
        case 3: cp = 0x10000 + rng() % (0x110000 - 0x10000); break;
        default: cp = "\"\\\n\t\x01\x1f/"[rng() % 7]; break;
      }
      if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0xFFFD;  // surrogates are not characters
      if (cp < 0x80) {
        s.push_back(static_cast<char>(cp));
      } else if (cp < 0x800) {
        s.push_back(static_cast<char>(0xC0 | (cp >> 6)));
        s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
      } else if (cp < 0x10000) {
        s.push_back(static_cast<char>(0xE0 | (cp >> 12)));
        s.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
      } else {
        s.push_back(static_cast<char>(0xF0 | (cp >> 18)));
        s.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
        s.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
      }
    }
    REQUIRE(json::is_valid_utf8(s));
    std::string out;
    json::append_string(out, s);
    std::string_view back;
    INFO("bytes: ", to_hex(s));
    REQUIRE(parse(parser, out).get_string().get(back) == simdjson::SUCCESS);
    CHECK(back == s);
    for (unsigned char c : out) CHECK(c >= 0x20);  // no raw control character left
  }
}

TEST_CASE("doubles: shortest round-trip digits, the same digits as JavaScript") {
  for (const DoubleCase& c : kDoubleCases) {
    const double value = from_bits(c.bits);
    std::string out;
    json::append_double(out, value);
    INFO("JavaScript: ", std::string(c.js), ", ours: ", out);
    double back = 0;
    const auto r = std::from_chars(out.data(), out.data() + out.size(), back);
    REQUIRE(r.ec == std::errc());
    CHECK(r.ptr == out.data() + out.size());
    CHECK(to_bits(back) == c.bits);
    CHECK(normalise(out) == normalise(c.js));
    // And it is a JSON number that simdjson reads as the same double.
    simdjson::dom::parser parser;
    double parsed = 0;
    REQUIRE(parse(parser, out).get_double().get(parsed) == simdjson::SUCCESS);
    CHECK(to_bits(parsed) == c.bits);
  }
}

TEST_CASE("doubles: the layout of fmt's shortest form") {
  const auto text = [](double d) {
    std::string out;
    json::append_double(out, d);
    return out;
  };
  CHECK(text(1.0) == "1");
  CHECK(text(0.1) == "0.1");
  CHECK(text(-2.5) == "-2.5");
  CHECK(text(1e21) == "1e+21");
  CHECK(text(1e-7) == "1e-07");
  CHECK(text(-0.0) == "-0");
}

TEST_CASE("NaN and infinities are written as null") {
  for (double d : {std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity(),
                   -std::numeric_limits<double>::infinity()}) {
    std::string out;
    json::append_double(out, d);
    CHECK(out == "null");
    out.clear();
    json::append_fixed(out, d, 6);
    CHECK(out == "null");
  }
}

TEST_CASE("fixed decimals agree with printf") {
  std::mt19937_64 rng(99);
  std::uniform_real_distribution<double> seconds(0, 4e9);
  char ref[512];
  for (int round = 0; round < 5000; ++round) {
    const double v = round % 2 ? seconds(rng) : -seconds(rng) / 1e6;
    const int decimals = static_cast<int>(rng() % 10);
    std::snprintf(ref, sizeof ref, "%.*f", decimals, v);
    std::string out;
    json::append_fixed(out, v, decimals);
    INFO("value bits: ", to_bits(v));
    REQUIRE(out == ref);
  }
  // Timestamps with whole microseconds (the common case), ties (exact halves, rounded to
  // even by printf), carries into the integer part, negative values and zeros.
  std::vector<std::pair<double, int>> cases;
  for (int k = 0; k < 3000; ++k) {
    cases.emplace_back((1717171717000000.0 + static_cast<double>(rng() % 100000000000)) / 1e6, 6);
  }
  for (double v : {0.5, 1.5, 2.5, 0.125, 0.375, 0.0078125, 1717171717.0078125, 2.675, 0.9999995,
                   0.99999949999, 1717171717.9999996, 9.5, 1e15 + 0.5, 4503599627370495.5,
                   9007199254740991.0, 9007199254740992.0, 1e300, 0.0, -0.0, -0.25, -1.5, -0.0078125,
                   1e-7, -1e-7, 5e-324}) {
    for (int decimals = 0; decimals <= 17; ++decimals) cases.emplace_back(v, decimals);
  }
  for (const auto& [v, decimals] : cases) {
    std::snprintf(ref, sizeof ref, "%.*f", decimals, v);
    std::string out;
    json::append_fixed(out, v, decimals);
    INFO("value bits: ", to_bits(v), " decimals: ", decimals);
    REQUIRE(out == ref);
  }
  std::string out;
  json::append_fixed(out, 1717171717.123456, 6);
  CHECK(out == "1717171717.123456");
  out.clear();
  json::append_fixed(out, 1.7976931348623157e308, 2);
  std::snprintf(ref, sizeof ref, "%.2f", 1.7976931348623157e308);
  CHECK(out == ref);
}

TEST_CASE("integers agree with printf over the whole range") {
  char ref[32];
  for (std::uint64_t v : {std::uint64_t{0}, std::uint64_t{9}, std::uint64_t{10}, std::uint64_t{4294967295u},
                          std::uint64_t{9007199254740993u}, std::numeric_limits<std::uint64_t>::max()}) {
    std::snprintf(ref, sizeof ref, "%" PRIu64, v);
    std::string out;
    json::append_uint(out, v);
    CHECK(out == ref);
  }
  for (std::int64_t v : {std::int64_t{0}, std::int64_t{-1}, std::numeric_limits<std::int64_t>::min(),
                         std::numeric_limits<std::int64_t>::max()}) {
    std::snprintf(ref, sizeof ref, "%" PRId64, v);
    std::string out;
    json::append_int(out, v);
    CHECK(out == ref);
  }
}

TEST_CASE("JsonWriter places commas and colons") {
  std::string buf = "[";  // appends: what is already there stays
  json::JsonWriter w(buf);
  CHECK(w.depth() == 0);
  w.begin_object()
      .key("a").uint_value(18446744073709551615u)
      .key("b").begin_array().int_value(-1).double_value(0.5).bool_value(true).null_value().end_array()
      .key("c").begin_object().end_object()
      .key("d").begin_array().end_array()
      .key("e\n").string_value("x\"y")
      .key("f").begin_array().begin_object().key("g").bool_value(false).end_object()
          .begin_object().end_object().raw_value("{\"h\":[1]}").end_array()
      .key("t").fixed_value(12.5, 3);
  CHECK(w.depth() == 1);
  w.end_object();
  CHECK(w.depth() == 0);
  CHECK(buf ==
        R"([{"a":18446744073709551615,"b":[-1,0.5,true,null],"c":{},"d":[],"e\n":"x\"y",)"
        R"("f":[{"g":false},{},{"h":[1]}],"t":12.500})");

  // simdjson reads the object back with every value in place.
  simdjson::dom::parser parser;
  const std::string object_text = buf.substr(1);
  simdjson::dom::object obj;
  REQUIRE(parse(parser, object_text).get_object().get(obj) == simdjson::SUCCESS);
  std::uint64_t a = 0;
  CHECK(obj["a"].get_uint64().get(a) == simdjson::SUCCESS);
  CHECK(a == 18446744073709551615u);
  std::string_view e;
  CHECK(obj["e\n"].get_string().get(e) == simdjson::SUCCESS);
  CHECK(e == "x\"y");
  CHECK(obj.size() == 7);
}

TEST_CASE("key_unescaped writes the same as key for plain names") {
  std::string a;
  std::string b;
  json::JsonWriter wa(a);
  json::JsonWriter wb(b);
  wa.begin_object().key("seq").uint_value(1).key("duration_ms").double_value(2.5).end_object();
  wb.begin_object().key_unescaped("seq").uint_value(1).key_unescaped("duration_ms").double_value(2.5).end_object();
  CHECK(a == b);
  CHECK(json::needs_no_escaping("records_done"));
  CHECK_FALSE(json::needs_no_escaping("a\"b"));
  CHECK_FALSE(json::needs_no_escaping("a\\b"));
  CHECK_FALSE(json::needs_no_escaping("tab\there"));
  CHECK_FALSE(json::needs_no_escaping("\xC3\xA9"));
}

// gen.js, which printed the tables above (node gen.js):
// // Reference values for tests/unit/json_writer_test.cpp, from V8's JSON.stringify,
// // TextDecoder (WHATWG UTF-8 decoding, U+FFFD per maximal subpart) and Number#toString.
// const strings = [
//   '', '41', '22', '5c', '2f', '7f', '412242', '5c6e',
//   '00','01','02','03','04','05','06','07','08','09','0a','0b','0c','0d','0e','0f',
//   '10','11','12','13','14','15','16','17','18','19','1a','1b','1c','1d','1e','1f',
//   'c3a9', 'e4b8ad', 'f09f9880', 'efbfbf', 'f48fbfbf', 'e280a8e280a9', 'efbbbf', 'c280', 'dfbf', 'e0a080',
//   '80', 'bf', 'c0af', 'c1bf', 'e08080', 'eda080', 'edbfbf', 'f4908080', 'f5', 'ff', 'fe',
//   'e282', 'e282ac', 'e28241', 'f09f98', 'f09f9841', 'f0808080', 'c3', '41c3', 'c341',
//   'f8888080', 'e0a0', 'edb080', 'f09fe282ac',
//   '22e282ac0a5cff0041',
// ];
// const utf8 = new TextDecoder('utf-8', {ignoreBOM: true});  // keep a leading U+FEFF
// console.log('// strings');
// for (const h of strings) {
//   const out = JSON.stringify(utf8.decode(Buffer.from(h, 'hex')));
//   let valid = true;
//   try { new TextDecoder('utf-8', {fatal: true}).decode(Buffer.from(h, 'hex')); } catch (e) { valid = false; }
//   console.log(`    {"${h}", "${Buffer.from(out, "utf8").toString("hex")}", ${valid}},`);
// }
// // doubles: fixed cases plus xorshift64 bit patterns
// const dv = new DataView(new ArrayBuffer(8));
// const bitsOf = (x) => { dv.setFloat64(0, x); return dv.getBigUint64(0); };
// const ofBits = (b) => { dv.setBigUint64(0, b); return dv.getFloat64(0); };
// const fixed = [0.1, 0.2, 0.3, 1/3, 2/3, 1, 100, 1e15, 1e16, 1e17, 1e20, 1e21, 1e22, 123456789.123, 1e-5, 1e-6, 1e-7,
//   5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, 9007199254740993, 4.35, 0.000123, 299792458, -1.5, -0.001,
//   1717171717.123456, 3.14159, 2**63, 2**64];
// const cases = fixed.map(bitsOf);
// let s = 0x9E3779B97F4A7C15n;
// const M = (1n << 64n) - 1n;
// while (cases.length < 130) {
//   s ^= (s << 13n) & M; s ^= s >> 7n; s ^= (s << 17n) & M;
//   const x = ofBits(s);
//   if (Number.isFinite(x)) cases.push(s);
// }
// // also some "human" decimals: k/1000 for a few k
// for (const k of [1, 7, 1234, 99999, 123456789]) cases.push(bitsOf(k / 1000));
// console.log('// doubles');
// for (const b of cases) console.log(`    {0x${b.toString(16).padStart(16, '0')}ULL, "${String(ofBits(b))}"},`);
