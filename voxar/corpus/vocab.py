"""Vocabulary of the sentence grammar (:mod:`voxar.corpus.sentences`): common English words in pocketsphinx's
dictionary (nouns are ``(singular, plural)``, verbs ``(base, past)`` or ``(base, past, -ing)``), and the number,
date, clock and money words that turn printed forms (``42``, ``3rd``, ``6:30``, ``$3.50``) into spoken ones.
"""

from __future__ import annotations

NAMES = (
    "John", "Mary", "Peter", "Susan", "David", "Anna", "James", "Linda", "Robert", "Sarah", "Michael", "Emma",
    "Thomas", "Laura", "Paul", "Helen", "George", "Alice", "Frank", "Kate", "Henry", "Lucy", "Jack", "Grace",
    "Daniel", "Rose", "Mark", "Nancy", "Steven", "Ruth", "Oliver", "Sophie", "Adam", "Julia", "Martin", "Clara",
    "Simon", "Emily", "Victor", "Diana", "Walter", "Nora", "Edward", "Karen", "Arthur", "Ellen", "Harry", "Jane",
)  # fmt: skip

SURNAMES = (
    "Smith", "Brown", "Green", "Miller", "Wilson", "Taylor", "Clark", "Walker", "Hall", "Young", "King", "Baker",
    "Carter", "Turner", "Parker", "Hill", "Wood", "Stone", "Fisher", "Mason", "Bell", "Cooper", "Ward", "Gray",
)  # fmt: skip

PERSONS = (
    ("man", "men"), ("woman", "women"), ("boy", "boys"), ("girl", "girls"), ("child", "children"),
    ("teacher", "teachers"), ("doctor", "doctors"), ("farmer", "farmers"), ("student", "students"),
    ("driver", "drivers"), ("neighbor", "neighbors"), ("friend", "friends"), ("brother", "brothers"),
    ("sister", "sisters"), ("mother", "mothers"), ("father", "fathers"), ("uncle", "uncles"), ("aunt", "aunts"),
    ("baker", "bakers"), ("nurse", "nurses"), ("pilot", "pilots"), ("writer", "writers"), ("singer", "singers"),
    ("painter", "painters"), ("captain", "captains"), ("soldier", "soldiers"), ("king", "kings"),
    ("queen", "queens"), ("lawyer", "lawyers"), ("manager", "managers"), ("worker", "workers"),
    ("visitor", "visitors"), ("stranger", "strangers"), ("player", "players"), ("cook", "cooks"),
    ("guard", "guards"), ("officer", "officers"), ("professor", "professors"), ("artist", "artists"),
    ("fisherman", "fishermen"), ("grandmother", "grandmothers"), ("grandfather", "grandfathers"),
    ("cousin", "cousins"), ("daughter", "daughters"), ("son", "sons"), ("waiter", "waiters"),
)  # fmt: skip

ADJ_PERSON = (
    "old", "young", "tall", "short", "happy", "tired", "busy", "quiet", "friendly", "angry", "kind", "clever",
    "brave", "lazy", "nervous", "polite", "proud", "honest", "famous", "lonely", "strong", "little", "new",
    "patient", "careful", "hungry", "curious", "cheerful", "gentle", "serious", "sleepy", "worried", "lucky",
)  # fmt: skip

ANIMALS = (
    ("dog", "dogs"), ("cat", "cats"), ("horse", "horses"), ("bird", "birds"), ("cow", "cows"), ("fox", "foxes"),
    ("rabbit", "rabbits"), ("duck", "ducks"), ("sheep", "sheep"), ("mouse", "mice"), ("lion", "lions"),
    ("bear", "bears"), ("wolf", "wolves"), ("goat", "goats"), ("pig", "pigs"), ("frog", "frogs"), ("owl", "owls"),
    ("monkey", "monkeys"), ("puppy", "puppies"), ("kitten", "kittens"), ("donkey", "donkeys"), ("tiger", "tigers"),
)  # fmt: skip

THINGS = (
    ("book", "books"), ("letter", "letters"), ("box", "boxes"), ("chair", "chairs"), ("table", "tables"),
    ("window", "windows"), ("door", "doors"), ("key", "keys"), ("cup", "cups"), ("bottle", "bottles"),
    ("bag", "bags"), ("hat", "hats"), ("coat", "coats"), ("shoe", "shoes"), ("ball", "balls"), ("car", "cars"),
    ("bicycle", "bicycles"), ("boat", "boats"), ("clock", "clocks"), ("lamp", "lamps"), ("picture", "pictures"),
    ("map", "maps"), ("phone", "phones"), ("radio", "radios"), ("camera", "cameras"), ("basket", "baskets"),
    ("blanket", "blankets"), ("ticket", "tickets"), ("coin", "coins"), ("ring", "rings"), ("knife", "knives"),
    ("spoon", "spoons"), ("plate", "plates"), ("bowl", "bowls"), ("flower", "flowers"), ("candle", "candles"),
    ("pencil", "pencils"), ("newspaper", "newspapers"), ("magazine", "magazines"), ("umbrella", "umbrellas"),
    ("jacket", "jackets"), ("shirt", "shirts"), ("glove", "gloves"), ("mirror", "mirrors"), ("pillow", "pillows"),
    ("bucket", "buckets"), ("ladder", "ladders"), ("hammer", "hammers"), ("rope", "ropes"), ("envelope", "envelopes"),
    ("wallet", "wallets"), ("watch", "watches"), ("guitar", "guitars"), ("piano", "pianos"), ("drum", "drums"),
    ("kite", "kites"), ("toy", "toys"), ("stone", "stones"), ("shell", "shells"), ("feather", "feathers"),
    ("painting", "paintings"), ("photograph", "photographs"), ("notebook", "notebooks"), ("suitcase", "suitcases"),
    ("computer", "computers"), ("desk", "desks"), ("sofa", "sofas"), ("carpet", "carpets"), ("bench", "benches"),
    ("tent", "tents"), ("wheel", "wheels"), ("engine", "engines"), ("tool", "tools"), ("brush", "brushes"),
)  # fmt: skip

ADJ_THING = (
    "red", "blue", "green", "yellow", "black", "white", "brown", "old", "new", "small", "large", "heavy", "light",
    "broken", "clean", "dirty", "wooden", "empty", "warm", "cold", "bright", "dark", "strange", "beautiful", "cheap",
    "expensive", "soft", "round", "long", "simple", "tiny", "huge", "shiny", "wet", "dry", "useful", "famous",
    "ugly", "pretty", "heavy", "silver", "golden", "plastic", "metal", "modern", "ancient", "fancy", "plain",
    "colorful", "narrow", "wide", "perfect", "lovely", "funny", "odd", "special", "favorite", "spare", "lost",
)  # fmt: skip

FOODS_COUNT = (
    ("apple", "apples"), ("orange", "oranges"), ("banana", "bananas"), ("egg", "eggs"), ("potato", "potatoes"),
    ("tomato", "tomatoes"), ("carrot", "carrots"), ("onion", "onions"), ("cookie", "cookies"),
    ("sandwich", "sandwiches"), ("pie", "pies"), ("cake", "cakes"), ("peach", "peaches"), ("pear", "pears"),
    ("lemon", "lemons"), ("sausage", "sausages"), ("biscuit", "biscuits"), ("pancake", "pancakes"),
    ("strawberry", "strawberries"), ("cucumber", "cucumbers"),
)  # fmt: skip

FOODS_MASS = (
    "bread", "milk", "cheese", "rice", "soup", "tea", "coffee", "water", "butter", "sugar", "juice", "honey",
    "chocolate", "pasta", "salad", "chicken", "fish", "fruit", "jam", "lemonade", "cream", "corn", "beans",
)  # fmt: skip

PLACES = (
    "in the garden", "at the station", "near the river", "in the kitchen", "behind the house", "on the beach",
    "at the market", "in the park", "at school", "in the library", "on the bridge", "by the lake", "in the forest",
    "at the hospital", "on the farm", "in the city", "at the airport", "under the tree", "on the hill",
    "in the village", "at the hotel", "in the office", "at the museum", "across the street", "near the church",
    "inside the shop", "outside the bank", "at the corner", "in the attic", "on the train", "at the harbor",
    "in the basement", "on the roof", "near the bus stop", "in the living room", "at the bakery", "on the island",
    "in the valley", "by the fire", "at the theater", "in the classroom", "on the mountain", "at the zoo",
    "in the hall", "next to the fountain", "at the post office", "in the car", "on the porch", "at home",
    "in the restaurant", "near the castle", "in the desert", "at the factory", "on the boat", "in the cellar",
)  # fmt: skip

TIMES_PAST = (
    "yesterday", "last night", "this morning", "last week", "last year", "in the evening", "after lunch",
    "before dinner", "at noon", "at midnight", "in the spring", "in the summer", "in the autumn", "in the winter",
    "two days ago", "a week ago", "long ago", "on the weekend", "early this morning", "late last night",
    "after school", "before breakfast", "during the storm", "at sunset", "at dawn", "last month", "once again",
)  # fmt: skip

TIMES_FUTURE = (
    "tomorrow", "next week", "tonight", "later today", "next year", "soon", "after dinner", "tomorrow morning",
    "on Monday", "on Friday", "next summer", "in the morning", "before noon", "this weekend", "next month",
    "in an hour", "right away", "before the holidays",
)  # fmt: skip

DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November",
    "December",
)  # fmt: skip

VERBS_THING = (
    ("find", "found"), ("buy", "bought"), ("lose", "lost"), ("carry", "carried"), ("paint", "painted"),
    ("open", "opened"), ("close", "closed"), ("drop", "dropped"), ("clean", "cleaned"), ("fix", "fixed"),
    ("sell", "sold"), ("wash", "washed"), ("move", "moved"), ("borrow", "borrowed"), ("bring", "brought"),
    ("take", "took"), ("hold", "held"), ("make", "made"), ("want", "wanted"), ("need", "needed"), ("like", "liked"),
    ("watch", "watched"), ("notice", "noticed"), ("keep", "kept"), ("hide", "hid"), ("return", "returned"),
    ("share", "shared"), ("pack", "packed"), ("check", "checked"), ("cover", "covered"), ("fill", "filled"),
    ("lift", "lifted"), ("push", "pushed"), ("pull", "pulled"), ("throw", "threw"), ("catch", "caught"),
    ("touch", "touched"), ("wrap", "wrapped"), ("order", "ordered"), ("choose", "chose"), ("forget", "forgot"),
    ("remember", "remembered"), ("show", "showed"), ("send", "sent"), ("draw", "drew"), ("break", "broke"),
    ("build", "built"), ("steal", "stole"), ("deliver", "delivered"), ("collect", "collected"), ("repair", "repaired"),
    ("hang", "hung"), ("polish", "polished"), ("measure", "measured"), ("study", "studied"), ("describe", "described"),
)  # fmt: skip

VERBS_PERSON = (
    ("meet", "met"), ("call", "called"), ("help", "helped"), ("visit", "visited"), ("thank", "thanked"),
    ("follow", "followed"), ("invite", "invited"), ("ask", "asked"), ("teach", "taught"), ("wake", "woke"),
    ("greet", "greeted"), ("hug", "hugged"), ("miss", "missed"), ("trust", "trusted"), ("warn", "warned"),
    ("remind", "reminded"), ("see", "saw"), ("hear", "heard"), ("pay", "paid"), ("join", "joined"),
    ("find", "found"), ("surprise", "surprised"), ("drive", "drove"), ("phone", "phoned"), ("answer", "answered"),
)  # fmt: skip

VERBS_INTRANS = (
    ("walk", "walked", "walking"), ("run", "ran", "running"), ("sleep", "slept", "sleeping"),
    ("laugh", "laughed", "laughing"), ("sing", "sang", "singing"), ("wait", "waited", "waiting"),
    ("smile", "smiled", "smiling"), ("dance", "danced", "dancing"), ("work", "worked", "working"),
    ("rest", "rested", "resting"), ("travel", "traveled", "traveling"), ("swim", "swam", "swimming"),
    ("sit", "sat", "sitting"), ("stand", "stood", "standing"), ("jump", "jumped", "jumping"),
    ("play", "played", "playing"), ("cook", "cooked", "cooking"), ("talk", "talked", "talking"),
    ("listen", "listened", "listening"), ("shout", "shouted", "shouting"), ("whisper", "whispered", "whispering"),
    ("study", "studied", "studying"), ("climb", "climbed", "climbing"), ("stay", "stayed", "staying"),
    ("hurry", "hurried", "hurrying"), ("read", "read", "reading"), ("write", "wrote", "writing"),
    ("paint", "painted", "painting"), ("cry", "cried", "crying"), ("wander", "wandered", "wandering"),
    ("relax", "relaxed", "relaxing"), ("practice", "practiced", "practicing"), ("shop", "shopped", "shopping"),
)  # fmt: skip

VERBS_FOOD = (
    ("eat", "ate"), ("cook", "cooked"), ("bake", "baked"), ("cut", "cut"), ("share", "shared"), ("buy", "bought"),
    ("order", "ordered"), ("taste", "tasted"), ("bring", "brought"), ("sell", "sold"), ("prepare", "prepared"),
    ("serve", "served"), ("drop", "dropped"), ("want", "wanted"),
)  # fmt: skip

ADVERBS = (
    "quickly", "slowly", "quietly", "loudly", "carefully", "happily", "suddenly", "gently", "early", "late",
    "again", "together", "alone", "easily", "politely", "silently", "patiently", "eagerly", "calmly", "proudly",
    "nervously", "bravely", "sadly", "softly", "all day", "for hours", "once more", "very well", "all night",
)  # fmt: skip

WEATHER = (
    "cold", "warm", "sunny", "windy", "rainy", "cloudy", "foggy", "hot", "dark", "quiet", "late", "early", "wet",
    "snowing", "freezing", "pleasant",
)  # fmt: skip

COMPARATIVES = (
    "bigger", "smaller", "older", "newer", "heavier", "cheaper", "longer", "shorter", "warmer", "brighter",
    "darker", "cleaner", "softer", "better", "stronger", "wider", "prettier", "simpler",
)  # fmt: skip

VEHICLES = ("train", "bus", "ferry", "plane", "last train", "first bus", "night bus", "boat")


# --------------------------------------------------------------------------------------------- numbers


_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_ORD_IRREGULAR = {
    "one": "first",
    "two": "second",
    "three": "third",
    "five": "fifth",
    "eight": "eighth",
    "nine": "ninth",
    "twelve": "twelfth",
}


def number_words(n: int) -> str:
    """Cardinal ``n`` (0-9999) in words without hyphens or "and": 42 -> "forty two", 305 -> "three hundred five"."""
    if not 0 <= n <= 9999:
        raise ValueError(f"number out of range 0-9999: {n}")
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + (f" {_ONES[ones]}" if ones else "")
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return f"{_ONES[hundreds]} hundred" + (f" {number_words(rest)}" if rest else "")
    thousands, rest = divmod(n, 1000)
    return f"{_ONES[thousands]} thousand" + (f" {number_words(rest)}" if rest else "")


def ordinal_words(n: int) -> str:
    """Ordinal ``n`` (1-9999) in words: 3 -> "third", 21 -> "twenty first", 40 -> "fortieth"."""
    words = number_words(n).split()
    last = words[-1]
    if last in _ORD_IRREGULAR:
        words[-1] = _ORD_IRREGULAR[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return " ".join(words)


def ordinal_suffix(n: int) -> str:
    """``3`` -> ``"3rd"``, ``11`` -> ``"11th"``, ``22`` -> ``"22nd"``."""
    if 10 <= n % 100 <= 20:
        return f"{n}th"
    return f"{n}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th') }"


def year_words(year: int) -> str:
    """A year 1920-1999 read in pairs: 1987 -> "nineteen eighty seven"."""
    if not 1920 <= year <= 1999:
        raise ValueError(f"year out of range 1920-1999: {year}")
    return f"{number_words(year // 100)} {number_words(year % 100)}"


def clock_pair(hour: int, minute: int) -> tuple[str, str]:
    """(``"6:30"``, ``"six thirty"``); minute 0 reads "o'clock", minutes 1-9 read "oh five"."""
    written = f"{hour}:{minute:02d}"
    if minute == 0:
        return written, f"{number_words(hour)} o'clock"
    if minute < 10:
        return written, f"{number_words(hour)} oh {number_words(minute)}"
    return written, f"{number_words(hour)} {number_words(minute)}"


def money_pair(dollars: int, cents: int = 0) -> tuple[str, str]:
    """(``"$3.50"``, ``"three dollars and fifty cents"``)."""
    unit = "dollar" if dollars == 1 else "dollars"
    if cents == 0:
        return f"${dollars}", f"{number_words(dollars)} {unit}"
    return f"${dollars}.{cents:02d}", f"{number_words(dollars)} {unit} and {number_words(cents)} cents"
