"""course-service: the seed's Course Service — the slow database query (the bottleneck) and a
cache lookup; plus an N+1 path, an error path and a recommendation call. Logs in JSON."""

from __future__ import annotations

import asyncio

from aiohttp import web
from opentelemetry.trace import SpanKind

from demo.services.telemetry import Telemetry, serve

t = Telemetry("course-service", "json")
routes = web.RouteTableDef()
COURSES = [{"id": i, "title": f"Course {i}"} for i in range(1, 6)]


@routes.get("/courses")
async def courses(_request: web.Request) -> web.Response:
    t.log("info", "listing courses")
    await t.db("SELECT * FROM courses WHERE active = true", 0.080).run()  # ← Bottleneck!
    t.log("warn", "slow query", duration_ms=80)
    with t.tracer.start_as_current_span("cache lookup", kind=SpanKind.INTERNAL, attributes={"cache.hit": True}):
        await asyncio.sleep(0.005)
        t.log("info", "cache hit")
    return web.json_response(COURSES)


@routes.get("/courses/{course_id}/lessons")
async def lessons(request: web.Request) -> web.Response:
    course_id = int(request.match_info["course_id"])
    t.log("info", "listing lessons one by one", course_id=course_id)
    for position in range(12):  # N+1: one query per lesson instead of one for all
        await t.db(f"SELECT * FROM lessons WHERE course_id = {course_id} AND position = {position}", 0.005).run()
    return web.json_response([{"course": course_id, "position": p} for p in range(12)])


@routes.post("/enroll")
async def enroll(_request: web.Request) -> web.Response:
    await t.db("INSERT INTO enrollments (user_id, course_id) VALUES (42, 7)", 0.020).run()
    raise RuntimeError("enrollment failed: seat limit reached")


@routes.get("/recommendations")
async def recommendations(_request: web.Request) -> web.Response:
    await t.db("SELECT * FROM recommendations WHERE user_id = 42", 0.040).run()
    t.log("info", "recommendations ready")
    return web.json_response(COURSES[:2])


app = t.app()
app.add_routes(routes)

if __name__ == "__main__":
    serve(app, 8002)
