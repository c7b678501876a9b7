import unittest

from textstats import mean, median, slugify, to_roman, word_count


class TestWordCount(unittest.TestCase):
    def test_word_count_simple(self):
        self.assertEqual(word_count("The quick brown fox"), 4)

    def test_word_count_empty(self):
        self.assertEqual(word_count(""), 0)
        self.assertEqual(word_count("  \n\t "), 0)

    def test_word_count_punctuation(self):
        self.assertEqual(word_count("Don't panic: it's well-known."), 5)


class TestSlugify(unittest.TestCase):
    def test_slugify_simple(self):
        self.assertEqual(slugify("Hello World"), "hello-world")

    def test_slugify_accents(self):
        self.assertEqual(slugify("Crème Brûlée recipes"), "creme-brulee-recipes")

    def test_slugify_trims_separators(self):
        self.assertEqual(slugify("  Hello, World!  "), "hello-world")
        self.assertEqual(slugify("...and then?"), "and-then")

    def test_slugify_max_length(self):
        self.assertEqual(slugify("a" * 100, max_length=10), "a" * 10)


class TestMean(unittest.TestCase):
    def test_mean(self):
        self.assertEqual(mean([1, 2, 3, 4]), 2.5)

    def test_mean_empty(self):
        with self.assertRaises(ValueError):
            mean([])


class TestMedian(unittest.TestCase):
    def test_median_odd(self):
        self.assertEqual(median([3, 1, 2]), 2)
        self.assertEqual(median([7]), 7)

    def test_median_even(self):
        self.assertEqual(median([4, 1, 3, 2]), 2.5)
        self.assertEqual(median([10, 20, 30, 40, 50, 60]), 35)

    def test_median_empty(self):
        with self.assertRaises(ValueError):
            median([])


class TestRoman(unittest.TestCase):
    def test_to_roman_additive(self):
        self.assertEqual(to_roman(1), "I")
        self.assertEqual(to_roman(8), "VIII")
        self.assertEqual(to_roman(2024), "MMXXIV")
        self.assertEqual(to_roman(3888), "MMMDCCCLXXXVIII")

    def test_to_roman_subtractive(self):
        self.assertEqual(to_roman(4), "IV")
        self.assertEqual(to_roman(9), "IX")
        self.assertEqual(to_roman(14), "XIV")
        self.assertEqual(to_roman(1994), "MCMXCIV")
        self.assertEqual(to_roman(3999), "MMMCMXCIX")

    def test_to_roman_out_of_range(self):
        for number in (0, -1, 4000):
            with self.assertRaises(ValueError):
                to_roman(number)


if __name__ == "__main__":
    unittest.main()
