// Tests of stop_matcher: stop strings split across pieces at every point, overlapping prefixes,
// several stop strings, multi-byte characters, release of held text, and a randomized comparison
// with a brute-force reference that searches the whole text at once.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "minigpt/generate/stop_matcher.hpp"

namespace mg = minigpt;

namespace {

struct outcome {
    std::string text;      // everything emitted (including flush when not stopped)
    bool stopped = false;
    std::string matched;
};

outcome feed(const std::vector<std::string>& stops, const std::vector<std::string>& pieces) {
    mg::stop_matcher m(stops);
    outcome o;
    for (const auto& p : pieces) {
        auto r = m.push(p);
        o.text += r.emit;
        if (r.stopped) {
            o.stopped = true;
            o.matched = r.matched;
            return o;
        }
    }
    o.text += m.flush();
    return o;
}

// Brute force: the stop occurrence that ends first in the whole text (ties: longer, then first
// listed), found by trying every end position in order.
outcome reference(const std::vector<std::string>& stops, const std::string& text) {
    for (std::size_t end = 1; end <= text.size(); ++end) {
        int best = -1;
        for (std::size_t i = 0; i < stops.size(); ++i) {
            const auto& s = stops[i];
            if (s.size() <= end && text.compare(end - s.size(), s.size(), s) == 0 &&
                (best < 0 || s.size() > stops[static_cast<std::size_t>(best)].size()))
                best = static_cast<int>(i);
        }
        if (best >= 0) {
            const auto& s = stops[static_cast<std::size_t>(best)];
            return {text.substr(0, end - s.size()), true, s};
        }
    }
    return {text, false, ""};
}

bool valid_utf8(const std::string& s) {
    for (std::size_t i = 0; i < s.size();) {
        const auto c = static_cast<unsigned char>(s[i]);
        const std::size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
        if (n == 0 || i + n > s.size()) return false;
        for (std::size_t k = 1; k < n; ++k)
            if ((static_cast<unsigned char>(s[i + k]) & 0xc0) != 0x80) return false;
        i += n;
    }
    return true;
}

}  // namespace

TEST(StopMatcher, MatchSplitAtEveryPoint) {
    const std::string text = "Hello</s>world";
    const std::vector<std::string> stops = {"</s>"};
    for (std::size_t a = 0; a <= text.size(); ++a) {
        for (std::size_t b = a; b <= text.size(); ++b) {
            const auto o = feed(stops, {text.substr(0, a), text.substr(a, b - a), text.substr(b)});
            EXPECT_TRUE(o.stopped) << a << "," << b;
            EXPECT_EQ(o.text, "Hello") << a << "," << b;
            EXPECT_EQ(o.matched, "</s>");
        }
    }
}

TEST(StopMatcher, HoldsOnlyWhatCouldStartAStop) {
    mg::stop_matcher m({"</s>"});
    auto r = m.push("Hello");
    EXPECT_EQ(r.emit, "Hello");  // no '<' at the end: nothing held
    r = m.push(" a<");
    EXPECT_EQ(r.emit, " a");
    EXPECT_EQ(m.held(), "<");
    r = m.push("/");
    EXPECT_EQ(r.emit, "");
    EXPECT_EQ(m.held(), "</");
    r = m.push("x");  // "</x" cannot start "</s>": all released
    EXPECT_EQ(r.emit, "</x");
    EXPECT_FALSE(r.stopped);
    r = m.push("</");
    EXPECT_EQ(r.emit, "");
    EXPECT_EQ(m.flush(), "</");  // at the end, a held partial match is ordinary text
    EXPECT_EQ(m.held(), "");
}

TEST(StopMatcher, OverlappingPrefix) {
    // "abab" against stop "abac": after "aba", a 'b' breaks the match at position 0 but "ab" may
    // start a new one, so only the first "ab" is released.
    mg::stop_matcher m({"abac"});
    EXPECT_EQ(m.push("aba").emit, "");
    auto r = m.push("b");
    EXPECT_EQ(r.emit, "ab");
    EXPECT_EQ(m.held(), "ab");
    r = m.push("ac");
    EXPECT_TRUE(r.stopped);
    EXPECT_EQ(r.emit, "");
    EXPECT_EQ(feed({"abac"}, {"a", "b", "a", "b"}).text, "abab");
    const auto o = feed({"abac"}, {"ab", "ab", "ac", "zz"});
    EXPECT_TRUE(o.stopped);
    EXPECT_EQ(o.text, "ab");
    // a self-overlapping stop: "aab" in "aaab"
    const auto o2 = feed({"aab"}, {"a", "a", "a", "b"});
    EXPECT_TRUE(o2.stopped);
    EXPECT_EQ(o2.text, "a");
}

TEST(StopMatcher, SeveralStopsFirstToEndWins) {
    // "bc" ends (after 'c') before "abcd" can (after 'd'), even when both arrive in one piece.
    auto o = feed({"abcd", "bc"}, {"xabcdy"});
    EXPECT_TRUE(o.stopped);
    EXPECT_EQ(o.matched, "bc");
    EXPECT_EQ(o.text, "xa");
    // Equal ends: the longer one (it starts earlier).
    o = feed({"b", "ab"}, {"zab"});
    EXPECT_EQ(o.matched, "ab");
    EXPECT_EQ(o.text, "z");
    o = feed({"ab", "abc"}, {"xabc"});
    EXPECT_EQ(o.matched, "ab");
    // Stops typical of chat templates.
    o = feed({"\n\nUser:", "###", "<|im_end|>"}, {"Sure.", "\n", "\n", "Us", "er", ":", " hi"});
    EXPECT_EQ(o.matched, "\n\nUser:");
    EXPECT_EQ(o.text, "Sure.");
    o = feed({"\n\nUser:", "###", "<|im_end|>"}, {"Done", "<|im", "_end", "|>", "more"});
    EXPECT_EQ(o.matched, "<|im_end|>");
    EXPECT_EQ(o.text, "Done");
}

TEST(StopMatcher, MultiByteCharacters) {
    // Pieces are whole characters; emitted text must be whole characters too.
    const std::vector<std::string> pieces = {"今", "日", "は", "日", "本", "語"};
    mg::stop_matcher m({"日本"});
    std::string out;
    bool stopped = false;
    for (const auto& p : pieces) {
        auto r = m.push(p);
        EXPECT_TRUE(valid_utf8(r.emit)) << r.emit;
        out += r.emit;
        if (r.stopped) {
            stopped = true;
            break;
        }
    }
    EXPECT_TRUE(stopped);
    EXPECT_EQ(out, "今日は");
    // "è" (C3 A8) shares its first byte with the stop "é" (C3 A9) but is released at once.
    mg::stop_matcher e({"é"});
    EXPECT_EQ(e.push("è").emit, "è");
    EXPECT_EQ(e.push("aé").emit, "a");
    // A stop ending with a multi-byte character, split inside the stop at every character boundary.
    const std::string text = "x→ «fin» y";
    const std::vector<std::size_t> cuts = {0, 1, 4, 5, 7, 8, 9, 10, 12, 13, 14};
    for (std::size_t c : cuts) {
        const auto o = feed({"«fin»"}, {text.substr(0, c), text.substr(c)});
        EXPECT_TRUE(o.stopped) << c;
        EXPECT_EQ(o.text, "x→ ") << c;
        EXPECT_TRUE(valid_utf8(o.text));
    }
}

TEST(StopMatcher, NoStopsPassesEverythingThrough) {
    mg::stop_matcher m({});
    EXPECT_EQ(m.push("abc").emit, "abc");
    EXPECT_EQ(m.flush(), "");
}

TEST(StopMatcher, ErrorsAndReset) {
    EXPECT_THROW(mg::stop_matcher({"ok", ""}), mg::error);
    mg::stop_matcher m({"END"});
    EXPECT_TRUE(m.push("xEND").stopped);
    EXPECT_THROW(m.push("more"), mg::error);
    EXPECT_EQ(m.flush(), "");  // text after the stop in the same piece is dropped
    m.reset();
    EXPECT_EQ(m.push("again").emit, "again");
}

TEST(StopMatcher, RandomTextsAndSplitsMatchBruteForce) {
    // Small alphabet so stops, overlaps and near misses are frequent.
    std::mt19937 gen(12345);
    const std::vector<std::vector<std::string>> stop_sets = {
        {"abc"}, {"aa", "abab"}, {"abc", "bca", "cc"}, {"cab", "ab", "abca"}, {"aaa"}, {"abcb", "bc", "cbb"}};
    int n_stopped = 0, n_cases = 0;
    for (const auto& stops : stop_sets) {
        for (int t = 0; t < 400; ++t) {
            std::string text;
            const int len = static_cast<int>(gen() % 20);
            for (int i = 0; i < len; ++i) text += static_cast<char>('a' + gen() % 3);
            std::vector<std::string> pieces;
            for (std::size_t i = 0; i < text.size();) {
                const std::size_t n = 1 + gen() % 4;
                pieces.push_back(text.substr(i, n));
                i += n;
            }
            const auto want = reference(stops, text);
            const auto got = feed(stops, pieces);
            ASSERT_EQ(got.stopped, want.stopped) << text;
            ASSERT_EQ(got.text, want.text) << text;
            ASSERT_EQ(got.matched, want.matched) << text;
            n_stopped += got.stopped;
            ++n_cases;
        }
    }
    // Both outcomes must have been exercised for the comparison to mean something.
    EXPECT_GT(n_stopped, n_cases / 10);
    EXPECT_LT(n_stopped, n_cases - n_cases / 10);
}
