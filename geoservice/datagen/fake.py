"""Fake but well-formed personal and company data for the construction-project layer (vectorized).

Nothing here is a real person: names are drawn from common surnames and given-name characters, ID numbers
(居民身份证号码, GB 11643-1999) carry a valid check digit over a random birth date and sequence, mobile
numbers use ordinary carrier prefixes with random subscriber digits.
"""

from __future__ import annotations

import numpy as np

SURNAMES = np.array(list("陈林黄王李张吴刘郑杨蔡许洪苏庄曾叶谢周柯卢邱江何徐高罗朱胡方"), dtype=object)
GIVEN = np.array(list("伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华建国志文海燕红玲辉鹏斌晓婷"), dtype=object)
FIRM_WORDS = np.array(list("鹭嘉翔海鼎恒瑞华金宏兴盛泰达安源禾屿港湾"), dtype=object)
FIRM_KINDS = np.array(
    ["建设发展有限公司", "置业有限公司", "实业有限公司", "投资集团有限公司", "城市开发有限公司", "产业园开发有限公司"],
    dtype=object,
)
MOBILE_PREFIXES = np.array(
    [
        "130",
        "131",
        "132",
        "133",
        "135",
        "136",
        "137",
        "138",
        "139",
        "150",
        "151",
        "152",
        "153",
        "155",
        "156",
        "157",
        "158",
        "159",
        "166",
        "177",
        "180",
        "181",
        "182",
        "183",
        "185",
        "186",
        "187",
        "188",
        "189",
        "198",
        "199",
    ],
    dtype=object,
)
_ID_WEIGHTS = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2])
_ID_CHECK = np.array(list("10X98765432"), dtype=object)


def _join(*columns: np.ndarray) -> np.ndarray:
    out = np.asarray(columns[0], dtype=object)
    for column in columns[1:]:
        out = out + np.asarray(column, dtype=object)
    return out


def person_names(rng: np.random.Generator, n: int) -> np.ndarray:
    """张三丰-style names: a surname and one or two given-name characters."""
    surname = SURNAMES[rng.integers(len(SURNAMES), size=n)]
    first = GIVEN[rng.integers(len(GIVEN), size=n)]
    second = GIVEN[rng.integers(len(GIVEN), size=n)]
    two = rng.uniform(size=n) < 0.7
    return np.where(two, _join(surname, first, second), _join(surname, first))


def company_names(rng: np.random.Generator, n: int, city: str = "厦门") -> np.ndarray:
    """厦门鹭泰建设发展有限公司-style developer names."""
    a = FIRM_WORDS[rng.integers(len(FIRM_WORDS), size=n)]
    b = FIRM_WORDS[rng.integers(len(FIRM_WORDS), size=n)]
    kind = FIRM_KINDS[rng.integers(len(FIRM_KINDS), size=n)]
    return _join(np.full(n, city, dtype=object), a, b, kind)


def id_check_digit(first17: np.ndarray) -> np.ndarray:
    """GB 11643-1999 check character (ISO 7064 MOD 11-2) for rows of 17 digits (int array, shape (n, 17))."""
    return _ID_CHECK[(np.asarray(first17) @ _ID_WEIGHTS) % 11]


def id_numbers(rng: np.random.Generator, n: int, region_codes: np.ndarray) -> np.ndarray:
    """18-character resident ID numbers: region code, birth date (1955–1999), sequence, check character."""
    region = np.asarray(region_codes, dtype=object)[rng.integers(len(region_codes), size=n)]
    start = np.datetime64("1955-01-01")
    birth = start + rng.integers(0, int((np.datetime64("1999-12-31") - start).astype(np.int64)), size=n).astype(
        "timedelta64[D]"
    )
    sequence = rng.integers(1, 1000, size=n)
    body = np.array(
        [f"{r}{str(b).replace('-', '')}{s:03d}" for r, b, s in zip(region, birth, sequence, strict=True)], dtype=object
    )
    digits = np.array([list(map(int, text)) for text in body], dtype=np.int64).reshape(n, 17)
    return _join(body, id_check_digit(digits))


def id_number_is_valid(text: str) -> bool:
    """True when an 18-character ID number's check character matches its first 17 digits."""
    if len(text) != 18 or not text[:17].isdigit():
        return False
    return id_check_digit(np.array([[int(c) for c in text[:17]]]))[0] == text[17].upper()


def mobile_numbers(rng: np.random.Generator, n: int) -> np.ndarray:
    """11-digit mainland mobile numbers."""
    prefix = MOBILE_PREFIXES[rng.integers(len(MOBILE_PREFIXES), size=n)]
    rest = rng.integers(0, 100_000_000, size=n)
    return np.array([f"{p}{r:08d}" for p, r in zip(prefix, rest, strict=True)], dtype=object)
