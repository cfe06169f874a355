"""One FaceSystem shared by threads: 10 identify while another enrolls (the service's situation)."""

from __future__ import annotations

import threading

from tests.conftest import data_path


def test_ten_threads_identify_while_another_enrolls(tmp_path, embedder):
    from facesys.system import FaceSystem

    fr = data_path("face_recognition")
    system = FaceSystem(tmp_path / "g", embedder=embedder)
    system.enroll("Barack Obama", [fr / "barack_obama" / "obama.jpg", fr / "barack_obama" / "obama2.jpg"])
    system.enroll("Joe Biden", sorted((fr / "joe_biden").glob("*.jpg")))
    newcomers = {
        name: sorted(p for p in (fr / name).iterdir() if p.suffix in (".jpg", ".png"))
        for name in ("kit_harington", "rose_leslie", "alex_lacamoire")
    }
    known = {"Barack Obama", "Joe Biden", *newcomers, None}
    pair = fr / "_multi_face" / "two_people.jpg"
    probes = [pair, fr / "barack_obama" / "obama3.jpg", fr / "_multi_face" / "kit_with_rose.jpg"]
    failures: list[str] = []
    answers: list[tuple] = []
    enrolled: dict[str, int] = {}
    start = threading.Barrier(11)

    def identify() -> None:
        start.wait()
        try:
            for _ in range(3):
                for probe in probes:
                    answers.append((probe, [face.name for face in system.identify(probe)]))
        except Exception as exc:  # any exception is a failure of the test
            failures.append(f"identify: {type(exc).__name__}: {exc}")

    def enroll() -> None:
        start.wait()
        try:
            for name, photos in newcomers.items():
                enrolled[name] = system.enroll(name, photos).count("enrolled")
        except Exception as exc:
            failures.append(f"enroll: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=identify) for _ in range(10)] + [threading.Thread(target=enroll)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert not failures, failures
    assert len(answers) == 10 * 3 * len(probes)
    for probe, names in answers:
        assert set(names) <= known, (probe, names)
        if probe == pair:  # enrolled before the threads started: always named
            assert sorted(names) == ["Barack Obama", "Joe Biden"]
    people = dict(system.gallery.people())
    assert all(people.get(name, 0) == count > 0 for name, count in enrolled.items()), (people, enrolled)
    assert len(enrolled) == 3 and system.gallery.check() == []
    final = {n for n in (face.name for face in system.identify(fr / "_multi_face" / "kit_with_rose.jpg"))}
    assert final == {"kit_harington", "rose_leslie"}


# A photo worker adapting its thread count while another thread imports faiss met the half-imported
# module (``AttributeError: partially initialized module 'faiss' has no attribute 'omp_get_max_threads'``,
# issue 23): one fresh process per trial, a thread calling adapt() in a tight loop during the import.
_ADAPT_DURING_IMPORT = """
import threading
from facesys import threads
errors, done = [], threading.Event()
def adapt_until_done():
    while not done.is_set():
        try:
            threads.adapt()
        except Exception as exc:
            errors.append(repr(exc))
            return
worker = threading.Thread(target=adapt_until_done)
worker.start()
import faiss
done.set()
worker.join()
print(errors[0] if errors else "ok")
"""


def test_adapt_never_meets_a_half_imported_faiss():
    import subprocess
    import sys

    for _ in range(3):  # old code: AttributeError in every trial
        result = subprocess.run([sys.executable, "-c", _ADAPT_DURING_IMPORT], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0 and result.stdout.strip() == "ok", result.stdout + result.stderr


def test_the_photo_pool_imports_torch_and_faiss_before_its_workers_start():
    import subprocess
    import sys

    code = "import sys; from facesys import threads; threads.photo_pool(2); print('torch' in sys.modules, 'faiss' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == ["True", "True"], result.stdout + result.stderr
